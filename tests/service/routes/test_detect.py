"""The detection routes' contract, in process over random weights: parameters, bodies, problems."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
import samples
from helpers import assert_problem, upload
from in_process import running_app, state_of
from PIL import Image

from model.conventions import MIN_FACE_TOLERANCE
from service.dependencies import get_settings

PHOTO = samples.photo(160, 120)


def test_multipart_answers_per_image_in_upright_pixels(client):
    response = client.post("/v1/detect", **upload(PHOTO, samples.photo(64, 200, "PNG")))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model"] == "extd-64"
    sizes = [(r["width"], r["height"], r["input_size"]) for r in body["results"]]
    assert sizes == [(160, 120, [160, 120]), (64, 200, [64, 200])]
    for result in body["results"]:
        for face in result["faces"]:
            assert len(face["box"]) == len(face["box_normalized"]) == 4
            assert 0.5 < face["score"] <= 1
    timings = body["timings_ms"]
    stages = ["upload", "decode", "queue", "resize", "network", "postprocess", "json"]
    assert list(timings) == [*stages[:2], "detect", "total", *stages[2:]]
    assert all(timings[stage] >= 0 for stage in stages)
    assert timings["network"] > 0
    # detect is the wait for the batcher and the forward pass's three stages
    detect = sum(timings[s] for s in ("queue", "resize", "network", "postprocess"))
    assert detect == pytest.approx(timings["detect"], abs=0.05)
    assert body["parameters"] | {"model": None} == {
        "model": None,
        "score_threshold": 0.5,
        "nms_iou": 0.3,
        "max_faces": 0,
        "scale": None,
        "max_side": None,
        "min_face": 0,
        "timeout_ms": None,
        "clip": False,
    }


def test_json_base64_and_data_urls_give_the_multipart_answer(client):
    by_form = client.post("/v1/detect", **upload(PHOTO)).json()["results"]
    encoded = base64.b64encode(PHOTO).decode()
    wrapped = base64.encodebytes(PHOTO).decode()  # 76 characters a line, like `base64`
    for text in (encoded, wrapped, f"data:image/jpeg;base64,{encoded}"):
        response = client.post("/v1/detect", json={"images": [text]})
        assert response.status_code == 200, response.text
        assert response.json()["results"] == by_form


def test_exif_orientation_gives_the_upright_size(client, tmp_path):
    (tmp_path / "p.jpg").write_bytes(PHOTO)
    rotated = samples.exif_rotated_jpeg(tmp_path / "p.jpg")
    (result,) = client.post("/v1/detect", **upload(rotated)).json()["results"]
    assert (result["width"], result["height"]) == (160, 120)


def test_parameters_are_applied(client):
    clipped = client.post(
        "/v1/detect", params={"score_threshold": 0.01, "clip": "true"}, **upload(PHOTO)
    ).json()
    faces = clipped["results"][0]["faces"]
    assert faces, "a random network finds something at 0.01"
    assert all(0 <= v <= 1 for face in faces for v in face["box_normalized"])
    top2 = client.post(
        "/v1/detect", params={"score_threshold": 0.01, "max_faces": 2}, **upload(PHOTO)
    ).json()
    assert len(top2["results"][0]["faces"]) == 2
    other = client.post("/v1/detect", params={"model": "other"}, **upload(PHOTO)).json()
    assert other["model"] == other["parameters"]["model"] == "other"


def test_min_face_shrinks_the_input_and_drops_smaller_faces(client):
    photo = samples.photo(1024, 768)
    params = {"score_threshold": 0.01, "min_face": 64}
    body = client.post("/v1/detect", params=params, **upload(photo)).json()
    (result,) = body["results"]
    assert result["input_size"] == [320, 240]  # a 64-pixel face lands at 20 pixels
    assert body["parameters"]["min_face"] == 64
    for face in result["faces"]:
        x1, y1, x2, y2 = face["box"]
        assert max(x2 - x1, y2 - y1) >= 64 * MIN_FACE_TOLERANCE - 0.02  # rounded to 0.01
    every = client.post("/v1/detect", params={"min_face": 0}, **upload(photo)).json()
    assert every["results"][0]["input_size"] == [1024, 768]


def test_the_service_default_min_face_applies_unless_a_request_sets_one(random_weights):
    with running_app(random_weights, min_face=40) as app:
        default = app.post("/v1/detect", **upload(samples.photo(1024, 768))).json()
        every = app.post(
            "/v1/detect", params={"min_face": 0}, **upload(samples.photo(1024, 768))
        ).json()
    assert default["results"][0]["input_size"] == [512, 384]
    assert default["parameters"]["min_face"] == 40
    assert every["results"][0]["input_size"] == [1024, 768]


@pytest.mark.parametrize(
    "params",
    [
        {"score_threshold": 2},
        {"nms_iou": 0},
        {"scale": 1, "max_side": 500},
        {"max_faces": -1},
        {"timeout_ms": "soon"},
        {"timeout_ms": 61_000},
        {"min_face": -1},
        {"min_face": "big"},
        {"colour": "blue"},
    ],
)
def test_bad_parameters_are_422_problems(client, params):
    body = assert_problem(
        client.post("/v1/detect", params=params, **upload(PHOTO)), 422, "invalid_parameters"
    )
    if "errors" in body:
        assert body["errors"][0]["location"].startswith("query")


def test_malformed_bodies(client):
    post = client.post
    assert_problem(
        post("/v1/detect", params={"model": "nope"}, **upload(PHOTO)), 404, "model_not_found"
    )
    raw = post("/v1/detect", content=PHOTO, headers={"content-type": "image/jpeg"})
    assert_problem(raw, 415, "unsupported_media_type")
    assert_problem(post("/v1/detect", json={"images": ["***"]}), 422, "invalid_base64")
    assert_problem(post("/v1/detect", json={"images": []}), 422, "invalid_request")
    assert_problem(post("/v1/detect", json={"images": [7]}), 422, "invalid_request")
    brace = post("/v1/detect", content=b"{", headers={"content-type": "application/json"})
    assert_problem(brace, 422, "invalid_request")
    assert_problem(post("/v1/detect", files={"other": ("a", PHOTO)}), 422, "invalid_request")
    text = post("/v1/detect", data={"images": "not a file"}, files={"x": ("a", PHOTO)})
    assert_problem(text, 422, "invalid_request")
    many = assert_problem(post("/v1/detect", **upload(*[PHOTO] * 17)), 422, "too_many_images")
    assert many["limit"] == 16


def test_json_nested_too_deeply(client):
    body = b'{"images": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    response = client.post("/v1/detect", content=body, headers={"content-type": "application/json"})
    assert "nested too deeply" in assert_problem(response, 422, "invalid_request")["detail"]


def test_bad_images_fail_the_request_with_their_index(client, tmp_path):
    (tmp_path / "p.jpg").write_bytes(PHOTO)
    truncated = samples.truncated_jpeg(tmp_path / "p.jpg")
    for payloads, index in (([PHOTO, b"just text\n"], 1), ([truncated], 0)):
        body = assert_problem(
            client.post("/v1/detect", **upload(*payloads)), 415, "unsupported_image"
        )
        assert body["index"] == index
    bomb = client.post("/v1/detect", **upload(PHOTO, samples.png_bomb()))
    assert assert_problem(bomb, 413, "image_too_large")["index"] == 1


@pytest.mark.parametrize(("fmt", "kind"), [("GIF", "GIF"), ("WEBP", "WebP"), ("PNG", "PNG (APNG)")])
def test_an_animated_image_is_refused_not_read_as_its_first_frame(client, fmt, kind):
    refused = client.post("/v1/detect", **upload(PHOTO, samples.animation(fmt)))
    body = assert_problem(refused, 415, "unsupported_image")
    assert body["index"] == 1
    assert f"an animated {kind}," in body["detail"]


def test_routes_take_the_settings_from_their_dependency(client):
    settings = state_of(client).settings.model_copy(
        update={"max_images_per_request": 1, "min_face": 40}
    )
    client.app.dependency_overrides[get_settings] = lambda: settings
    try:
        two = client.post("/v1/detect", **upload(PHOTO, PHOTO))
        assert assert_problem(two, 422, "too_many_images")["limit"] == 1
        one = client.post("/v1/detect", **upload(PHOTO)).json()
        assert one["parameters"]["min_face"] == 40
    finally:
        del client.app.dependency_overrides[get_settings]


def test_work_limits_are_checked_before_decoding(random_weights):
    with running_app(
        random_weights, max_input_pixels=100_000, max_request_pixels=1_000_000, max_body_bytes=2**20
    ) as app:
        big = samples.photo(1024, 768)
        assert (
            assert_problem(app.post("/v1/detect", **upload(big)), 413, "input_too_large")["index"]
            == 0
        )
        assert app.post("/v1/detect", params={"max_side": 320}, **upload(big)).status_code == 200
        several = app.post("/v1/detect", params={"max_side": 64}, **upload(big, big))
        assert assert_problem(several, 413, "request_too_large")["limit"] == 1_000_000
        huge = app.post(
            "/v1/detect", content=b"0" * (2**20 + 1), headers={"content-type": "application/json"}
        )
        assert_problem(huge, 413, "body_too_large")
        metrics = app.get("/metrics").text
    assert 'extd_rejected_total{reason="input_too_large"} 1.0' in metrics
    assert 'extd_rejected_total{reason="request_too_large"} 1.0' in metrics


def test_headers_over_the_limit_are_431(client):
    response = client.get("/v1/models", headers={"x-padding": "a" * 40_000})
    assert_problem(response, 431, "headers_too_large")


def test_annotated_jpeg_has_the_upload_s_size(client):
    response = client.post(
        "/v1/detect/annotated", params={"score_threshold": 0.01}, **upload(PHOTO)
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/jpeg"
    assert int(response.headers["x-faces"]) >= 1
    assert response.headers["x-model"] == "extd-64"
    assert Image.open(io.BytesIO(response.content)).size == (160, 120)
    two = client.post("/v1/detect/annotated", **upload(PHOTO, PHOTO))
    assert assert_problem(two, 422, "too_many_images")["limit"] == 1


def test_annotated_shows_a_photo_with_alpha_as_it_is_seen_on_white(client):
    picture = samples.transparent_photo(160, 120)
    response = client.post(
        "/v1/detect/annotated",
        params={"score_threshold": 0.99},  # no box drawn over the picture
        **upload(samples.encode(picture, "PNG")),
    )
    assert response.headers["x-faces"] == "0"
    shown = np.asarray(Image.open(io.BytesIO(response.content))).astype(float)
    rgba = np.asarray(picture).astype(float)
    weight = rgba[..., 3:] / 255
    expected = rgba[..., :3] * weight + 255 * (1 - weight)
    assert np.abs(shown - expected).mean() < 3
    assert shown[:, :32].min() > 200  # transparent: white, not the colours stored there
