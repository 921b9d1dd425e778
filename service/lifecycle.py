"""The service's life: loading, warming, ready, stopping; a drain that loses no accepted request.

The port opens at once: models load in the background while ``/livez``
answers and ``/readyz`` reports why it is not ready yet (as Kubernetes
startup and readiness probes expect). On SIGTERM the service stops taking
new work but keeps its port open (``/readyz`` 503 ``stopping``), lets every
accepted request finish, answers whatever is left at the drain limit with a
problem document, and only then lets the server close.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Literal

from service.metrics import Metrics

log = logging.getLogger(__name__)

Phase = Literal["loading", "warming", "ready", "stopping", "failed"]

# After the drain limit, refused work still needs a moment to send its 503s.
SETTLE_S = 5.0


class Lifecycle:
    """The current phase and the count of requests in flight, on the event loop's thread."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics
        self.phase: Phase = "loading"
        self.failure: str | None = None
        self._in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()

    @property
    def ready(self) -> bool:
        return self.phase == "ready"

    @property
    def stopping(self) -> bool:
        return self.phase in ("stopping", "failed")

    def enter(self, phase: Phase) -> None:
        if self.stopping:  # a stop wins over the loader finishing
            return
        log.info("phase: %s", phase)
        self.phase = phase
        self.metrics.ready.set(1 if phase == "ready" else 0)

    def fail(self, message: str) -> None:
        """Startup cannot go on: log why once; the server then exits with a non-zero status."""
        log.error("%s", message)
        self.failure = message
        self.phase = "failed"
        self.metrics.ready.set(0)

    @contextmanager
    def request(self) -> Iterator[None]:
        """Count a request as in flight while it runs."""
        self._in_flight += 1
        self._idle.clear()
        try:
            yield
        finally:
            self._in_flight -= 1
            if not self._in_flight:
                self._idle.set()

    async def drain(self, timeout_s: float) -> bool:
        """Stop taking work and wait for the requests in flight; False if time ran out."""
        if not self.stopping:
            self.phase = "stopping"
            self.metrics.ready.set(0)
        log.info("draining %d requests in flight (at most %.0f s)", self._in_flight, timeout_s)
        try:
            await asyncio.wait_for(self._idle.wait(), timeout_s)
        except TimeoutError:
            return False
        return True
