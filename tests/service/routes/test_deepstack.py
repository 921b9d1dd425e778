"""The DeepStack / CodeProject.AI route, in process: its form, its key field, its strictness."""

from __future__ import annotations

import samples
from helpers import assert_problem
from in_process import running_app

PHOTO = samples.photo(160, 120)


def test_deepstack_route(client):
    response = client.post(
        "/v1/vision/face", files={"image": ("a.jpg", PHOTO)}, data={"min_confidence": "0.01"}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["success"] is True
    assert body["count"] == len(body["predictions"]) >= 1
    first = body["predictions"][0]
    assert set(first) == {"confidence", "x_min", "y_min", "x_max", "y_max"}
    assert 0 <= first["x_min"] <= first["x_max"] <= 159
    assert first["confidence"] >= 0.01


def test_deepstack_route_goes_through_the_upload_limits(client):
    two = client.post("/v1/vision/face", files=[("image", ("a", PHOTO)), ("image", ("b", PHOTO))])
    assert assert_problem(two, 422, "too_many_images")["limit"] == 1
    as_file = client.post(
        "/v1/vision/face", files={"image": ("a.jpg", PHOTO), "min_confidence": ("c.txt", b"0.6")}
    )
    assert_problem(as_file, 422, "invalid_parameters")
    bad = client.post(
        "/v1/vision/face", files={"image": ("a.jpg", PHOTO)}, data={"min_confidence": "high"}
    )
    assert_problem(bad, 422, "invalid_parameters")


def test_unknown_models_and_fields_are_refused(client):
    image = {"image": ("a.jpg", PHOTO)}
    assert_problem(
        client.post("/v1/vision/face", params={"model": "nope"}, files=image),
        404,
        "model_not_found",
    )
    assert client.post("/v1/vision/face", params={"model": "other"}, files=image).status_code == 200
    assert_problem(
        client.post("/v1/vision/face", params={"colour": "blue"}, files=image),
        422,
        "invalid_parameters",
    )
    typo = client.post("/v1/vision/face", files=image, data={"min_confidense": "0.6"})
    assert "min_confidense" in assert_problem(typo, 422, "invalid_parameters")["detail"]
    for bad in ("2", "-0.1", "nan"):
        answer = client.post("/v1/vision/face", files=image, data={"min_confidence": bad})
        assert "\n" not in assert_problem(answer, 422, "invalid_parameters")["detail"]


def test_the_api_key_may_come_in_the_form(random_weights):
    with running_app(random_weights, api_keys="the-key") as app:
        image = {"image": ("a.jpg", PHOTO)}
        assert_problem(app.post("/v1/vision/face", files=image), 401, "unauthorized")
        wrong = app.post("/v1/vision/face", files=image, data={"api_key": "nope"})
        assert_problem(wrong, 401, "unauthorized")
        right = app.post("/v1/vision/face", files=image, data={"api_key": "the-key"})
        assert right.status_code == 200, right.text
        header = app.post("/v1/vision/face", files=image, headers={"X-API-Key": "the-key"})
        assert header.status_code == 200
