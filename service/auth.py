"""Optional API keys: hashed and compared in constant time, a rate limit per key, and a
throttle on clients that keep presenting wrong tokens.

Keys come from ``EXTD_API_KEYS`` (comma-separated) or ``EXTD_API_KEYS_FILE`` (one
per line; a line ``sha256:<hex>`` stores only the hash). Only their sha256
hashes are kept; a key is named in metrics and logs by the first 12 hex
digits of its hash, never by itself.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

HASH_PREFIX = "sha256:"
# Wrong tokens a client may present per minute before it is made to wait.
FAILURES_PER_MINUTE = 10
# Clients whose failures are remembered (oldest forgotten first): bounded memory.
TRACKED_CLIENTS = 10_000


def key_hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def read_key_hashes(keys: str | None, keys_file: Path | None) -> list[str]:
    """The hashes of the configured keys (blank lines and ``#`` comments skipped)."""
    entries = [k.strip() for k in (keys or "").split(",")]
    if keys_file is not None:
        entries += [line.strip() for line in keys_file.read_text().splitlines()]
    return [
        entry.removeprefix(HASH_PREFIX).lower()
        if entry.startswith(HASH_PREFIX)
        else key_hash(entry)
        for entry in entries
        if entry and not entry.startswith("#")
    ]


@dataclass
class TokenBucket:
    """``rate`` tokens a second, at most ``burst`` saved up."""

    rate: float
    burst: float
    tokens: float = field(init=False)
    updated: float = field(default_factory=time.monotonic)

    def __post_init__(self) -> None:
        self.tokens = self.burst

    def wait(self) -> float:
        """Seconds until a token is there (0: one is)."""
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        return 0.0 if self.tokens >= 1 else (1 - self.tokens) / self.rate

    def take(self) -> float:
        """Take a token: 0 when there was one, else the seconds until there is."""
        wait = self.wait()
        if not wait:
            self.tokens -= 1
        return wait


def retry_after(seconds: float) -> dict[str, str]:
    return {"Retry-After": str(max(1, math.ceil(seconds)))}


class FailureThrottle:
    """Per client address, a budget of wrong tokens that refills over a minute."""

    def __init__(self, per_minute: int = FAILURES_PER_MINUTE) -> None:
        self.per_minute = per_minute
        self._buckets: OrderedDict[str, TokenBucket] = OrderedDict()
        self._lock = threading.Lock()

    def _bucket(self, client: str) -> TokenBucket:
        bucket = self._buckets.get(client)
        if bucket is None:
            bucket = self._buckets[client] = TokenBucket(self.per_minute / 60, self.per_minute)
            if len(self._buckets) > TRACKED_CLIENTS:
                self._buckets.popitem(last=False)
        self._buckets.move_to_end(client)
        return bucket

    def wait(self, client: str) -> float:
        """Seconds the client must wait before it may try again (0: it may)."""
        with self._lock:
            return self._bucket(client).wait()

    def failed(self, client: str) -> None:
        with self._lock:
            self._bucket(client).take()


class ApiKeys:
    """The configured keys and a rate limit per key; disabled when there are none."""

    def __init__(self, hashes: Iterable[str], *, rate_per_s: float, burst: int) -> None:
        self.hashes = [bytes.fromhex(h) for h in hashes]
        self.rate_per_s = rate_per_s
        self.burst = burst
        self._buckets: dict[str, TokenBucket] = {}
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return bool(self.hashes)

    def identify(self, presented: str) -> str | None:
        """The key's name (its hash's first 12 hex digits), or None. Every configured hash is
        compared, in constant time, so timing tells nothing about which or how many match."""
        digest = hashlib.sha256(presented.encode()).digest()
        found = None
        for stored in self.hashes:
            if hmac.compare_digest(digest, stored):
                found = stored.hex()[:12]
        return found

    def take(self, key: str) -> float:
        """0 when the key may make a request now, else the seconds until it may."""
        if self.rate_per_s <= 0:
            return 0.0
        with self._lock:
            bucket = self._buckets.setdefault(key, TokenBucket(self.rate_per_s, self.burst))
            return bucket.take()
