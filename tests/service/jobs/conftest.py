"""A real Redis server for the job tests (skipped, with the way to get one, when absent)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tools import redis_server


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory) -> Iterator[str]:
    if not redis_server.available():
        pytest.skip("needs redis-server: apt-get install redis-server")
    with redis_server.redis_server(tmp_path_factory.mktemp("redis")) as url:
        yield url


@pytest.fixture(params=["sqlite", "redis"])
def queue_url(request) -> str | None:
    """Each store backend: None is the embedded SQLite queue; Redis starts empty."""
    if request.param == "sqlite":
        return None
    import redis

    url = request.getfixturevalue("redis_url")
    with redis.Redis.from_url(url) as client:
        client.flushall()
    return url
