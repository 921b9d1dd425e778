"""The several-process layout (``EXTD_HTTP_WORKERS`` above 1): HTTP workers in front of one
inference process that owns the models, for a GPU host.

``python -m service`` then supervises: it opens the port, starts the inference
process (:mod:`service.inference`) on a Unix socket in a folder only this user
can open, and ``EXTD_HTTP_WORKERS`` HTTP worker processes that share the port
and hand each upload to it (:mod:`service.remote`). A worker that dies is
started again; so is the inference process (its calls in flight get 503
``not_ready``), unless it could not load the models (the service exits 3). On
SIGTERM the workers drain first (accepted requests finish, as in one process),
then the inference process stops. Their metrics are kept together
(``PROMETHEUS_MULTIPROC_DIR``): any worker's ``/metrics`` adds every process's
counters up.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

from service.config import Settings
from service.lifecycle import SETTLE_S

log = logging.getLogger(__name__)

# Exit status of a process that could not start (no model).
STARTUP_FAILED = 3
# How often the supervisor looks at its processes.
CHECK_S = 0.5


class Fleet:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.folder = Path(tempfile.mkdtemp(prefix="extd-fleet-"))  # mode 0700
        self.socket_path = self.folder / "inference.sock"
        metrics = self.folder / "metrics"
        metrics.mkdir()
        self.environment = os.environ | {"PROMETHEUS_MULTIPROC_DIR": str(metrics)}
        self.listening = socket.create_server((settings.host, settings.port), backlog=2048)
        self.listening.set_inheritable(True)
        self.inference: subprocess.Popen | None = None
        self.workers: list[subprocess.Popen | None] = [None] * settings.http_workers
        self._stopping = threading.Event()

    def _start(self, *role: str, **keywords) -> subprocess.Popen:
        command = [sys.executable, "-m", "service", *role, "--socket", str(self.socket_path)]
        return subprocess.Popen(command, env=self.environment, **keywords)

    def _start_worker(self, index: int) -> None:
        fd = self.listening.fileno()
        self.workers[index] = self._start("http", "--fd", str(fd), pass_fds=(fd,))

    def run(self) -> int:
        """Serve until SIGTERM or SIGINT; the exit status."""
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: self._stopping.set())
        log.info(
            "serving on %s:%d with %d HTTP workers and one inference process",
            self.settings.host,
            self.settings.port,
            len(self.workers),
        )
        self.inference = self._start("inference")
        for index in range(len(self.workers)):
            self._start_worker(index)
        status = 0
        while not self._stopping.wait(CHECK_S):
            if self.inference.poll() is not None:
                if self.inference.returncode == STARTUP_FAILED:
                    status = STARTUP_FAILED
                    break
                log.warning("the inference process exited (%s): starting it again",
                            self.inference.returncode)  # fmt: skip
                self.inference = self._start("inference")
            for index, worker in enumerate(self.workers):
                if worker is not None and worker.poll() is not None:
                    log.warning("HTTP worker %d exited (%s): starting it again",
                                worker.pid, worker.returncode)  # fmt: skip
                    self._start_worker(index)
        self._stop()
        return status

    def _stop(self) -> None:
        """The workers drain first, then the inference process stops."""
        bound = self.settings.drain_timeout_s + 2 * SETTLE_S
        for process in self.workers:
            if process is not None and process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.workers:
            _wait(process, bound)
        self.listening.close()
        if self.inference is not None and self.inference.poll() is None:
            self.inference.send_signal(signal.SIGTERM)
        _wait(self.inference, bound)
        shutil.rmtree(self.folder, ignore_errors=True)
        log.info("stopped")


def _wait(process: subprocess.Popen | None, timeout_s: float) -> None:
    if process is None:
        return
    try:
        process.wait(timeout_s)
    except subprocess.TimeoutExpired:
        log.warning("process %d did not stop in %.0f s: killed", process.pid, timeout_s)
        process.kill()
        process.wait()
