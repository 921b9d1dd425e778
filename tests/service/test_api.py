"""The HTTP API against a live server with the released weights: the faces it answers.

The contract (parameters, bodies, problems) is checked in process, without data, in
``tests/service/routes``."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
import samples
from helpers import FAST_FP32, assert_problem, assert_same_faces, upload
from PIL import Image

from model.images import open_image

pytestmark = pytest.mark.slow


def faces_of(result: dict) -> np.ndarray:
    return np.array([[*f["box"], f["score"]] for f in result["faces"]], dtype=np.float32).reshape(
        -1, 5
    )


def test_health_models_and_docs(server):
    with server.client() as http:
        assert http.get("/livez").json() == {"status": "ok"}
        assert http.get("/readyz").json()["models"] == ["extd-32", "extd-48", "extd-64"]
        models = {m["name"]: m for m in http.get("/v1/models").json()["models"]}
        assert models["extd-64"]["default"] is True
        assert models["extd-32"]["parameters"] == 62_939
        assert models["extd-48"]["variant"] == "fpn-48-prelu"
        assert len(models["extd-64"]["sha256"]) == 64
        assert http.get("/docs").status_code == 200
        spec = http.get("/openapi.json").json()
        assert {"/v1/detect", "/v1/detect/annotated", "/v1/vision/face", "/v1/models"} <= set(
            spec["paths"]
        )


def test_multipart_and_json_give_the_detector_s_faces(server, dev_images, reference_detectors):
    data = [p.read_bytes() for p in dev_images[:2]]
    expected = reference_detectors["extd-48"].detect(
        [open_image(d) for d in data], score_threshold=0.5
    )
    with server.client() as http:
        by_form = http.post("/v1/detect", params={"model": "extd-48"}, **upload(*data))
        body = {"images": [base64.b64encode(d).decode() for d in data]}
        by_json = http.post("/v1/detect", params={"model": "extd-48"}, json=body)
    for response in (by_form, by_json):
        assert response.status_code == 200, response.text
        payload = response.json()
        assert payload["model"] == "extd-48"
        assert [(r["width"], r["height"]) for r in payload["results"]] == [(1024, 768), (1024, 684)]
        for result, faces in zip(payload["results"], expected, strict=True):
            assert_same_faces(faces_of(result), faces, min_score=0.5)
            assert len(result["faces"]) == len(faces)
        assert payload["parameters"]["score_threshold"] == 0.5
        assert payload["timings_ms"]["total"] > 0


def test_parameters_are_applied(server, dev_images):
    data = dev_images[0].read_bytes()
    with server.client() as http:
        top2 = http.post(
            "/v1/detect", params={"max_faces": 2, "score_threshold": 0.9}, **upload(data)
        ).json()
        clipped = http.post(
            "/v1/detect", params={"clip": "true", "max_side": 512}, **upload(data)
        ).json()
    faces = top2["results"][0]["faces"]
    assert len(faces) == 2
    assert faces[0]["score"] >= faces[1]["score"] > 0.9
    for face in clipped["results"][0]["faces"]:
        assert min(face["box_normalized"]) >= 0
        assert max(face["box_normalized"]) <= 1


def test_exif_rotation_gives_upright_coordinates(server, dev_images):
    upright, rotated = dev_images[0].read_bytes(), samples.exif_rotated_png(dev_images[0])
    with server.client() as http:
        a = http.post("/v1/detect", **upload(upright)).json()["results"][0]
        b = http.post("/v1/detect", **upload(rotated)).json()["results"][0]
    assert (b["width"], b["height"]) == (a["width"], a["height"]) == (1024, 768)
    assert_same_faces(faces_of(b), faces_of(a), min_score=0.5, min_iou=0.9, score_tolerance=0.05)


def test_awkward_but_valid_images(server, dev_images):
    tiny = samples.encode(Image.new("RGB", (1, 1), (200, 100, 50)), "PNG")
    with server.client() as http:
        for payload in (
            tiny,
            samples.cmyk_jpeg(dev_images[0]),
            samples.sixteen_bit_png(dev_images[0]),
        ):
            response = http.post("/v1/detect", **upload(payload))
            assert response.status_code == 200, response.text
        assert http.post("/v1/detect", **upload(tiny)).json()["results"][0]["faces"] == []
        grey_faces = http.post(
            "/v1/detect", **upload(samples.sixteen_bit_png(dev_images[0]))
        ).json()
        assert len(grey_faces["results"][0]["faces"]) >= 5


def test_deadline_passed(server, dev_images):
    with server.client() as http:
        response = http.post(
            "/v1/detect", params={"timeout_ms": 1}, **upload(dev_images[3].read_bytes())
        )
        assert_problem(response, 504, "deadline_exceeded")


def test_annotated_jpeg(server, dev_images):
    with server.client() as http:
        response = http.post(
            "/v1/detect/annotated",
            params={"model": "extd-32"},
            **upload(dev_images[0].read_bytes()),
        )
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/jpeg"
    assert int(response.headers["x-faces"]) >= 9
    picture = Image.open(io.BytesIO(response.content))
    assert picture.size == (1024, 768)


def test_deepstack_compatible_route(server, dev_images, reference_detectors):
    data = dev_images[0].read_bytes()
    with server.client() as http:
        response = http.post(
            "/v1/vision/face",
            files={"image": ("a.jpg", data, "image/jpeg")},
            data={"min_confidence": "0.6"},
        )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["success"] is True
    expected = reference_detectors["extd-64"].detect([open_image(data)], score_threshold=0.6)[0]
    assert body["count"] == len(body["predictions"]) == len(expected)
    first = body["predictions"][0]
    assert set(first) == {"confidence", "x_min", "y_min", "x_max", "y_max"}
    assert all(isinstance(first[k], int) for k in ("x_min", "y_min", "x_max", "y_max"))
    assert first["confidence"] >= 0.6


def test_metrics_are_exported(server, dev_images):
    with server.client() as http:
        http.post("/v1/detect", **upload(dev_images[1].read_bytes()))
        text = http.get("/metrics").text
    for name in (
        "extd_http_requests_total",
        "extd_http_request_duration_seconds_bucket",
        "extd_queue_wait_seconds_bucket",
        "extd_preprocess_duration_seconds_bucket",
        "extd_inference_duration_seconds_bucket",
        "extd_batch_size_bucket",
        "extd_queue_depth",
        "extd_faces_per_image_bucket",
        "extd_rejected_total",
        "extd_model_info",
        "process_resident_memory_bytes",
    ):
        assert name in text, name
    assert f'extd_model_info{{backend="{FAST_FP32}",device="cpu",name="extd-64"' in text
    assert 'route="/v1/detect"' in text


def test_a_photo_with_alpha_keeps_it_through_anonymize(server, dev_images):
    """The acceptance of issue 43: the alpha channel comes back as sent, the faces of the
    colours (faint ones too) are hidden, and nothing stored under alpha 0 comes back."""
    colours = open_image(dev_images[0])
    height, width = colours.shape[:2]
    alpha = np.full((height, width), 255, np.uint8)
    alpha[:, : width // 3] = 0
    alpha[:, width // 3 : 2 * width // 3] = 40
    photo = samples.encode(Image.fromarray(np.dstack([colours, alpha])), "PNG")
    with server.client() as http:
        response = http.post(
            "/v1/anonymize",
            params={"method": "solid", "color": "#00ff00"},
            headers={"accept": "application/json"},
            files={"image": ("cut-out.png", photo)},
        )
    assert response.status_code == 200, response.text
    answer = response.json()
    hidden = np.asarray(Image.open(io.BytesIO(base64.b64decode(answer["image"]))))
    assert (answer["format"], hidden.shape) == ("png", (height, width, 4))
    np.testing.assert_array_equal(hidden[..., 3], alpha)
    faces = faces_of(answer)
    centres = (faces[:, 0] + faces[:, 2]) / 2
    assert ((centres > width / 3) & (centres < 2 * width / 3)).sum() >= 2  # the faint ones
    assert (centres > 2 * width / 3).sum() >= 2
    assert (centres < width / 3).sum() == 0  # what is not shown is not looked at
    for x1, y1, x2, y2 in faces[:, :4].astype(int):  # a face's centre is the fill
        centre = hidden[(y1 + y2) // 2, (x1 + x2) // 2]
        assert centre.tolist() == [0, 255, 0, alpha[(y1 + y2) // 2, (x1 + x2) // 2]]
    under = hidden[alpha == 0, :3]  # the background, or a face's fill reaching into it
    assert ((under == 255).all(axis=1) | (under == [0, 255, 0]).all(axis=1)).all()
