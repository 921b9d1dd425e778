"""``/v1/models`` and ``/v1/admin/reload``, in process."""

from __future__ import annotations

import shutil

from helpers import assert_problem
from in_process import RANDOM_MODELS, running_app


def test_models_are_listed_with_what_is_known_of_them(client):
    models = {m["name"]: m for m in client.get("/v1/models").json()["models"]}
    assert set(models) == set(RANDOM_MODELS)
    first = models["extd-64"]
    assert first["default"] is True
    assert models["other"]["default"] is False
    assert first["variant"] == RANDOM_MODELS["extd-64"]
    assert first["parameters"] == 62_939  # EXTD-32's layout
    assert (first["backend"], first["device"], first["file"]) == (
        "torch",
        "cpu",
        "extd-64.safetensors",
    )
    assert len(first["sha256"]) == 64
    assert first["source"] == "random init"


def test_admin_endpoints_are_off_without_a_token(client):
    assert_problem(client.post("/v1/admin/reload"), 404, "admin_disabled")


def test_reload_loads_new_files_and_needs_the_token(random_weights, tmp_path):
    weights = shutil.copytree(random_weights, tmp_path / "weights")
    with running_app(weights, admin_token="s3cret") as app:
        assert_problem(app.post("/v1/admin/reload"), 401, "unauthorized")
        wrong = app.post("/v1/admin/reload", headers={"authorization": "Bearer nope"})
        assert_problem(wrong, 401, "unauthorized")
        shutil.copyfile(weights / "other.safetensors", weights / "third.safetensors")
        (weights / "broken.safetensors").write_bytes(b"\x00" * 100)
        report = app.post("/v1/admin/reload", headers={"authorization": "Bearer s3cret"})
        assert report.status_code == 200, report.text
        body = report.json()
        assert body["loaded"] == ["third"]
        assert set(body["refused"]) == {"broken"}
        assert body["models"] == ["extd-64", "other", "third"]
        assert [m["name"] for m in app.get("/v1/models").json()["models"]][-1] == "third"
