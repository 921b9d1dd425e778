"""Real servers for tests: ``python -m service`` as a subprocess on 127.0.0.1."""

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
import pytest

from model.weights import pull

START_TIMEOUT_S = 180


@dataclass
class Server:
    url: str
    process: subprocess.Popen
    weights_dir: Path
    log_path: Path

    def client(self, **kwargs) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=kwargs.pop("timeout", 120), **kwargs)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, timeout_s: float = 60) -> int:
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


def start_server(folder: Path, env: dict[str, str] | None = None) -> Server:
    """Start ``python -m service`` and wait until /readyz answers 200."""
    port = free_port()
    log_path = folder / "server.log"
    settings = {
        "EXTD_HOST": "127.0.0.1",
        "EXTD_PORT": str(port),
        "EXTD_WEIGHTS_DIR": str(folder / "weights"),
        "EXTD_LOG_LEVEL": "info",
        **(env or {}),
    }
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "service"],
            env={**os.environ, **settings},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    server = Server(
        f"http://127.0.0.1:{port}", process, Path(settings["EXTD_WEIGHTS_DIR"]), log_path
    )
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"server exited with {process.returncode}:\n{server.log()[-3000:]}")
        try:
            if httpx.get(f"{server.url}/readyz", timeout=2).status_code == 200:
                return server
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    server.stop()
    pytest.fail(f"server not ready after {START_TIMEOUT_S} s:\n{server.log()[-3000:]}")


def weights_folder(folder: Path, mirror: Path, names: list[str]) -> Path:
    """A weights folder holding only ``names``, pulled from the local mirror."""
    pull(names, directory=folder / "weights", mirror=str(mirror))
    return folder / "weights"
