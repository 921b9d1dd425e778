"""Fixtures of the command tests: users who run ``python -m model`` from a folder of their own."""

from __future__ import annotations

from pathlib import Path

import pytest
from cli import User


@pytest.fixture(scope="session")
def user(tmp_path_factory, weights_mirror) -> User:
    """One user for the session: their cache fills as the tests go, as a user's would."""
    return User.new(tmp_path_factory.mktemp("user"), weights_mirror)


@pytest.fixture
def new_user(tmp_path, weights_mirror) -> User:
    """A user who has run nothing yet: an empty home, no weights pulled."""
    return User.new(tmp_path / "user", weights_mirror)


@pytest.fixture(scope="session")
def photo(dev_images) -> Path:
    """A real 1024x768 crowd photo of the dev split."""
    return dev_images[0]
