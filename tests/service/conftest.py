"""Fixtures of the service tests: an in-process app over random weights (no data needed)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from in_process import running_app, write_random_weights
from starlette.testclient import TestClient


@pytest.fixture(scope="session")
def random_weights(tmp_path_factory) -> Path:
    return write_random_weights(tmp_path_factory.mktemp("random-weights"))


@pytest.fixture(scope="module")
def client(random_weights) -> Iterator[TestClient]:
    with running_app(random_weights) as running:
        yield running
