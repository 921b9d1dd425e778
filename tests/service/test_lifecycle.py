"""Start-up and shutdown of a live server: the port opens at once, failures are short and clear."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import httpx
import pytest
from live_server import TEST_SETTINGS

from tools.launcher import free_port, start, wait_ready

pytestmark = pytest.mark.slow


def test_the_port_opens_before_the_models_are_ready(tmp_path, weights_mirror):
    server = start(tmp_path, TEST_SETTINGS | {"EXTD_WEIGHTS_MIRROR": str(weights_mirror)})
    try:
        reasons, deadline = [], time.monotonic() + 120
        while time.monotonic() < deadline and server.process.poll() is None:
            try:
                ready = httpx.get(f"{server.url}/readyz", timeout=5)
            except httpx.TransportError:
                time.sleep(0.05)
                continue
            if ready.status_code == 200:
                break
            assert ready.status_code == 503
            assert ready.headers["content-type"].startswith("application/problem+json")
            reasons.append(ready.json()["reason"])
            assert httpx.get(f"{server.url}/livez").status_code == 200
            models = httpx.get(f"{server.url}/v1/models")
            if models.status_code != 200:  # it may have become ready meanwhile
                assert (models.status_code, models.json()["code"]) == (503, "not_ready")
            time.sleep(0.05)
        assert reasons, "the port opened only once the service was ready"
        assert set(reasons) <= {"loading", "warming"}
        assert reasons[0] == "loading"
        wait_ready(server)
        assert httpx.get(f"{server.url}/v1/models").status_code == 200
    finally:
        assert server.stop() == 0


def test_unreachable_weights_stop_the_service_with_a_short_hint(tmp_path):
    env = {
        **os.environ,
        "EXTD_HOST": "127.0.0.1",
        "EXTD_PORT": str(free_port()),
        "EXTD_WEIGHTS_DIR": str(tmp_path / "weights"),
        "EXTD_WEIGHTS_MIRROR": f"http://127.0.0.1:{free_port()}/releases",  # nothing listens
    }
    done = subprocess.run(
        [sys.executable, "-m", "service"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode != 0
    stderr = done.stderr.strip().splitlines()
    assert len(stderr) < 15, done.stderr
    assert "Traceback" not in done.stderr
    for way_out in ("EXTD_WEIGHTS_MIRROR", "python -m model weights pull", "EXTD_PULL_MISSING"):
        assert way_out in done.stderr
