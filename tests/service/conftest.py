"""Fixtures of the service tests: live servers on 127.0.0.1 with the released weights."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from live_server import start_server

from service.launcher import RunningServer


@pytest.fixture(scope="session")
def server(tmp_path_factory, weights_mirror) -> Iterator[RunningServer]:
    """The default configuration; its empty weights folder is filled by pulling on start."""
    folder = tmp_path_factory.mktemp("server")
    running = start_server(
        folder, {"EXTD_WEIGHTS_MIRROR": str(weights_mirror), "EXTD_WATCH_WEIGHTS": "false"}
    )
    yield running
    running.stop()


@pytest.fixture(scope="session")
def reference_detectors(release_weights):
    """In-process Detectors to check the server's answers against."""
    from model.detector import Detector

    return {f"extd-{w}": Detector(path) for w, path in release_weights.items()}
