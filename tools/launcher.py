"""Start ``python -m service`` (or its job worker) in a subprocess and wait until it is ready.

Used by the tests, the benchmarks and the smoke script: they all run the
same command the container runs, on 127.0.0.1.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx


@dataclass
class RunningServer:
    url: str
    process: subprocess.Popen
    weights_dir: Path
    log_path: Path

    def client(self, **kwargs) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=kwargs.pop("timeout", 120), **kwargs)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, timeout_s: float = 60) -> int:
        """SIGTERM (graceful: queued work finishes), then kill after ``timeout_s``."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start(folder: Path, env: dict[str, str] | None = None, *, role: str = "api") -> RunningServer:
    """Start the service (``role`` ``worker``: its job worker, which has no URL) with
    ``EXTD_*`` settings ``env``, without waiting for it; logs go to ``folder/server.log``."""
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    log_path = folder / "server.log"
    settings = {
        "EXTD_HOST": "127.0.0.1",
        "EXTD_PORT": str(port),
        "EXTD_WEIGHTS_DIR": str(folder / "weights"),
        "EXTD_JOBS_DIR": str(folder / "jobs"),
        **(env or {}),
    }
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "service", role],
            env={**os.environ, **settings},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    return RunningServer(
        f"http://127.0.0.1:{port}", process, Path(settings["EXTD_WEIGHTS_DIR"]), log_path
    )


def wait_ready(server: RunningServer, timeout_s: float = 180) -> RunningServer:
    """Wait until ``/readyz`` answers 200; stop the server and raise if it does not."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(
                f"server exited with {server.process.returncode}:\n{server.log()[-3000:]}"
            )
        try:
            if httpx.get(f"{server.url}/readyz", timeout=2).status_code == 200:
                return server
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    server.stop()
    raise RuntimeError(f"server not ready after {timeout_s} s:\n{server.log()[-3000:]}")


def launch(
    folder: Path, env: dict[str, str] | None = None, *, timeout_s: float = 180
) -> RunningServer:
    """Start the service and wait until it is ready."""
    return wait_ready(start(folder, env), timeout_s)


def launch_worker(
    folder: Path, env: dict[str, str] | None = None, *, timeout_s: float = 180
) -> RunningServer:
    """Start ``python -m service worker`` and wait until it takes jobs."""
    worker = start(folder, env, role="worker")
    deadline = time.monotonic() + timeout_s
    while "running video jobs" not in worker.log():
        if worker.process.poll() is not None or time.monotonic() > deadline:
            worker.stop()
            raise RuntimeError(f"worker did not start:\n{worker.log()[-3000:]}")
        time.sleep(0.2)
    return worker
