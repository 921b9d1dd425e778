"""Live servers for tests, through the same launcher the benchmarks use."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from helpers import FAST_FP32

from model.options import RuntimeOptions
from model.weights import pull
from tools.launcher import RunningServer, launch

# Warming one shape is enough for tests that do not measure the first request; the
# exact fp32 path, so that answers can be held against the torch reference.
TEST_SETTINGS = {"EXTD_LOG_LEVEL": "info", "EXTD_WARM_SIZES": "640x480", "EXTD_BACKEND": FAST_FP32}


def start_server(folder: Path, env: dict[str, str] | None = None) -> RunningServer:
    try:
        return launch(folder, TEST_SETTINGS | (env or {}))
    except RuntimeError as error:
        pytest.fail(str(error))


def wait_until(condition, timeout_s: float = 60) -> bool:
    """Poll ``condition`` until it holds; False if it never did within ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.2)
    return False


def weights_folder(folder: Path, mirror: Path, names: list[str]) -> Path:
    """A weights folder holding only ``names``, pulled from the local mirror."""
    pull(names, runtime=RuntimeOptions(weights_dir=folder / "weights", weights_mirror=str(mirror)))
    return folder / "weights"
