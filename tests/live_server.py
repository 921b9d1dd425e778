"""Live servers for tests, through the same launcher the benchmarks use."""

from __future__ import annotations

from pathlib import Path

import pytest

from model.weights import pull
from service.launcher import RunningServer, launch

# Warming one shape is enough for tests that do not measure the first request.
TEST_SETTINGS = {"EXTD_LOG_LEVEL": "info", "EXTD_WARM_SIZES": "640x480"}


def start_server(folder: Path, env: dict[str, str] | None = None) -> RunningServer:
    try:
        return launch(folder, TEST_SETTINGS | (env or {}))
    except RuntimeError as error:
        pytest.fail(str(error))


def weights_folder(folder: Path, mirror: Path, names: list[str]) -> Path:
    """A weights folder holding only ``names``, pulled from the local mirror."""
    pull(names, directory=folder / "weights", mirror=str(mirror))
    return folder / "weights"
