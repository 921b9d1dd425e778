"""API keys, rate limits and the wrong-token throttle, in process."""

from __future__ import annotations

import hashlib

import pytest
from helpers import assert_problem
from in_process import running_app
from metrics_text import sample

from service.auth import ApiKeys, FailureThrottle, TokenBucket, read_key_hashes

KEY, OTHER_KEY = "first-key-0123456789", "second-key-9876543210"


@pytest.fixture(scope="module")
def keyed(random_weights, tmp_path_factory):
    keys_file = tmp_path_factory.mktemp("keys") / "keys.txt"
    keys_file.write_text(
        f"# one hashed key\nsha256:{hashlib.sha256(OTHER_KEY.encode()).hexdigest()}\n"
    )
    with running_app(
        random_weights,
        api_keys=KEY,
        api_keys_file=keys_file,
        api_rate_per_s=0.2,
        api_burst=2,
        protect_metrics=True,
    ) as app:
        yield app


def test_without_a_key_only_health_and_the_page_are_open(keyed):
    assert keyed.get("/livez").status_code == 200
    assert keyed.get("/readyz").status_code == 200
    assert keyed.get("/").status_code == 200
    for path in ("/v1/models", "/metrics"):
        response = keyed.get(path)
        assert_problem(response, 401, "unauthorized")
        assert response.headers["www-authenticate"] == "Bearer"
    assert_problem(keyed.get("/v1/models", headers={"X-API-Key": "wrong"}), 401, "unauthorized")


def test_keys_in_either_header_and_a_rate_per_key(keyed):
    assert keyed.get("/v1/models", headers={"X-API-Key": KEY}).status_code == 200
    bearer = {"Authorization": f"Bearer {OTHER_KEY}"}
    assert keyed.get("/v1/models", headers=bearer).status_code == 200
    assert keyed.get("/v1/models", headers=bearer).status_code == 200
    limited = assert_problem(keyed.get("/v1/models", headers=bearer), 429, "rate_limited")
    assert "over its rate" in limited["detail"]
    assert int(keyed.get("/v1/models", headers=bearer).headers["retry-after"]) >= 1
    text = keyed.get("/metrics", headers={"X-API-Key": KEY}).text
    key_name = hashlib.sha256(OTHER_KEY.encode()).hexdigest()[:12]
    assert sample(text, "extd_api_requests_total", key=key_name) == 2
    assert OTHER_KEY not in text
    assert KEY not in text


def test_wrong_keys_are_throttled_but_never_lock_out_a_right_one(random_weights):
    with running_app(random_weights, api_keys=KEY) as app:
        statuses = [
            app.get("/v1/models", headers={"X-API-Key": f"guess-{i}"}).status_code
            for i in range(12)
        ]
        assert statuses[:10] == [401] * 10
        assert statuses[10:] == [429, 429]
        refused = app.get("/v1/models", headers={"X-API-Key": "guess-12"})
        assert "too many wrong" in assert_problem(refused, 429, "rate_limited")["detail"]
        assert int(refused.headers["retry-after"]) >= 1
        # The same address with the right key: served.
        assert app.get("/v1/models", headers={"X-API-Key": KEY}).status_code == 200


def test_keys_are_kept_as_hashes():
    hashes = read_key_hashes(" a , b ,, # c", None)
    assert hashes == [hashlib.sha256(k.encode()).hexdigest() for k in ("a", "b")]
    keys = ApiKeys(hashes, rate_per_s=0, burst=1)
    assert keys.identify("a") == hashes[0][:12]
    assert keys.identify("nope") is None
    assert keys.take("a") == 0.0


def test_token_bucket_and_failure_throttle():
    bucket = TokenBucket(rate=1.0, burst=2)
    assert [bucket.take() for _ in range(2)] == [0.0, 0.0]
    assert 0 < bucket.take() <= 1.0
    throttle = FailureThrottle(per_minute=3)
    for _ in range(3):
        assert throttle.wait("client") == 0
        throttle.failed("client")
    assert throttle.wait("client") > 0
    assert throttle.wait("someone else") == 0
