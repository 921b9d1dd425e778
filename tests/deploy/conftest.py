"""Fixtures of the deployment checks: the repository's container and orchestration files."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from dockerfile import Dockerfile

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO


@pytest.fixture(scope="session")
def compose() -> dict:
    return yaml.safe_load((REPO / "docker-compose.yml").read_text())


@pytest.fixture(scope="session", params=["Dockerfile", "Dockerfile.gpu"])
def dockerfile(request) -> Dockerfile:
    return Dockerfile.read(REPO / "docker" / request.param)
