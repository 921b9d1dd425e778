"""Liveness, readiness through the phases, and the metrics text, in process."""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import replace

import samples
from helpers import assert_problem, upload
from in_process import state_of
from metrics_text import sample

from service.dependencies import get_state
from service.lifecycle import Lifecycle


@contextmanager
def seen_in_phase(client, phase: str):
    """Every route sees the service in ``phase`` (a dependency override of its state)."""
    state = state_of(client)
    lifecycle = Lifecycle(state.metrics)
    lifecycle.phase = phase
    client.app.dependency_overrides[get_state] = lambda: replace(state, lifecycle=lifecycle)
    try:
        yield
    finally:
        client.app.dependency_overrides.clear()


def test_live_and_ready(client):
    assert client.get("/livez").json() == {"status": "ok"}
    assert client.get("/readyz").json() == {"status": "ready", "models": ["extd-64", "other"]}


def test_not_ready_while_loading_or_warming(client):
    for phase in ("loading", "warming"):
        with seen_in_phase(client, phase):
            ready = assert_problem(client.get("/readyz"), 503, "not_ready")
            assert ready["reason"] == phase
            refused = client.post("/v1/detect", **upload(samples.photo()))
            assert assert_problem(refused, 503, "not_ready")["reason"] == phase
            assert refused.headers["retry-after"] == "1"
            assert client.get("/livez").status_code == 200


def test_stopping_refuses_new_work_but_stays_live(client):
    lifecycle = state_of(client).lifecycle  # the drain middleware holds the real one
    lifecycle.phase = "stopping"
    try:
        assert assert_problem(client.get("/readyz"), 503, "not_ready")["reason"] == "stopping"
        refused = client.post("/v1/detect", **upload(samples.photo()))
        assert_problem(refused, 503, "shutting_down")
        assert refused.headers["retry-after"] == "1"
        assert client.get("/livez").status_code == 200
    finally:
        lifecycle.phase = "ready"
    assert client.get("/readyz").status_code == 200


def test_metrics_count_requests_images_and_refusals(client):
    before = client.get("/metrics").text
    assert client.post("/v1/detect", **upload(samples.photo(), samples.photo())).status_code == 200
    client.post("/v1/detect", **upload(b"not an image"))
    after = client.get("/metrics").text
    assert after.startswith("# HELP")

    def grew(name: str, **labels) -> float:
        return sample(after, name, **labels) - sample(before, name, **labels)

    assert grew("extd_images_total", model="extd-64") == 2
    assert grew("extd_rejected_total", reason="bad_image") == 1
    assert grew("extd_http_requests_total", route="/v1/detect", method="POST", status="415") == 1
    assert 'extd_model_info{backend="torch",device="cpu",name="extd-64"' in after
    assert sample(after, "extd_ready") == 1
