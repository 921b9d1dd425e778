"""A throwaway ``redis-server`` on a loopback port, for the tests and the benchmarks.

Debian's ``redis-server`` package (``apt-get install redis-server``); the server keeps an
append-only file in its folder, as a deployment would, and stops with the block.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tools.launcher import free_port

REDIS_SERVER = "redis-server"


def available() -> bool:
    return shutil.which(REDIS_SERVER) is not None


@contextmanager
def redis_server(folder: Path) -> Iterator[str]:
    """Run a Redis server keeping its files in ``folder``; yields its ``redis://`` URL."""
    import redis

    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    command = [REDIS_SERVER, "--bind", "127.0.0.1", "--port", str(port), "--dir", str(folder)]
    command += ["--appendonly", "yes", "--save", "", "--protected-mode", "yes"]
    with open(folder / "redis.log", "wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    url = f"redis://127.0.0.1:{port}/0"
    try:
        client = redis.Redis.from_url(url)
        deadline = time.monotonic() + 20
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        f"redis-server did not start: {(folder / 'redis.log').read_text()}"
                    ) from None
                time.sleep(0.05)
        client.close()
        yield url
    finally:
        process.terminate()
        process.wait(10)
