"""The HTTP API against a live server: happy paths, every error, metrics."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
import samples
from helpers import FAST_FP32, assert_same_faces
from PIL import Image

from model.images import open_image

pytestmark = pytest.mark.slow


def faces_of(result: dict) -> np.ndarray:
    return np.array([[*f["box"], f["score"]] for f in result["faces"]], dtype=np.float32).reshape(
        -1, 5
    )


def upload(*payloads: bytes) -> dict:
    return {
        "files": [
            ("images", (f"im{i}", p, "application/octet-stream")) for i, p in enumerate(payloads)
        ]
    }


def assert_problem(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["status"] == status
    assert body["code"] == code
    assert body["detail"]
    return body


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


def test_bad_images_fail_the_request_with_their_index(server, dev_images):
    good = dev_images[0].read_bytes()
    with server.client() as http:
        bomb = assert_problem(
            http.post("/v1/detect", **upload(good, samples.png_bomb())), 413, "image_too_large"
        )
        assert bomb["index"] == 1
        truncated = http.post("/v1/detect", **upload(samples.truncated_jpeg(dev_images[0])))
        assert assert_problem(truncated, 415, "unsupported_image")["index"] == 0
        text = http.post("/v1/detect", **upload(good, good, b"just some text\n"))
        assert assert_problem(text, 415, "unsupported_image")["index"] == 2
        assert http.get("/livez").status_code == 200
        assert http.post("/v1/detect", **upload(good)).status_code == 200


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({"score_threshold": 2}, "invalid_parameters"),
        ({"nms_iou": 0}, "invalid_parameters"),
        ({"scale": 1, "max_side": 500}, "invalid_parameters"),
        ({"max_faces": -1}, "invalid_parameters"),
        ({"timeout_ms": "soon"}, "invalid_parameters"),
        ({"colour": "blue"}, "invalid_parameters"),
    ],
)
def test_bad_parameters(server, dev_images, params, code):
    with server.client() as http:
        assert_problem(
            http.post("/v1/detect", params=params, **upload(dev_images[0].read_bytes())), 422, code
        )


def test_base64_with_line_breaks_as_plain_base64_writes_it(server, dev_images):
    data = dev_images[0].read_bytes()
    wrapped = base64.encodebytes(data).decode()  # 76 characters a line, like `base64`
    assert "\n" in wrapped
    with server.client() as http:
        response = http.post("/v1/detect", json={"images": [wrapped]})
    assert response.status_code == 200, response.text
    assert len(response.json()["results"][0]["faces"]) >= 9


def test_json_nested_too_deeply_is_a_clear_error(server):
    body = b'{"images": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    with server.client() as http:
        response = http.post(
            "/v1/detect", content=body, headers={"content-type": "application/json"}
        )
        assert "nested too deeply" in assert_problem(response, 422, "invalid_request")["detail"]
        assert http.get("/livez").status_code == 200


def test_bad_requests(server, dev_images):
    good = dev_images[0].read_bytes()
    with server.client() as http:
        assert_problem(
            http.post("/v1/detect", params={"model": "nope"}, **upload(good)),
            404,
            "model_not_found",
        )
        assert_problem(
            http.post("/v1/detect", content=good, headers={"content-type": "image/jpeg"}),
            415,
            "unsupported_media_type",
        )
        assert_problem(http.post("/v1/detect", json={"images": ["***"]}), 422, "invalid_base64")
        assert_problem(http.post("/v1/detect", json={"images": []}), 422, "invalid_request")
        assert_problem(
            http.post("/v1/detect", content=b"{", headers={"content-type": "application/json"}),
            422,
            "invalid_request",
        )
        assert_problem(
            http.post("/v1/detect", files={"other": ("a", good)}), 422, "invalid_request"
        )
        many = assert_problem(
            http.post("/v1/detect", **upload(*[b"x"] * 17)), 422, "too_many_images"
        )
        assert many["limit"] == 16
        huge = http.post(
            "/v1/detect",
            content=b"0" * (33 * 1024 * 1024),
            headers={"content-type": "application/json"},
        )
        assert_problem(huge, 413, "body_too_large")
        assert_problem(http.get("/v1/nothing-here"), 404, "not_found")
        assert http.post("/v1/detect", **upload(good)).status_code == 200


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
        two = http.post("/v1/detect/annotated", **upload(*[dev_images[0].read_bytes()] * 2))
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/jpeg"
    assert int(response.headers["x-faces"]) >= 9
    picture = Image.open(io.BytesIO(response.content))
    assert picture.size == (1024, 768)
    assert_problem(two, 422, "invalid_request")


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


def test_deepstack_route_goes_through_the_upload_limits(server, dev_images):
    data = dev_images[0].read_bytes()
    with server.client() as http:
        two = http.post(
            "/v1/vision/face", files=[("image", ("a.jpg", data)), ("image", ("b.jpg", data))]
        )
        assert assert_problem(two, 422, "too_many_images")["limit"] == 1
        as_file = http.post(
            "/v1/vision/face",
            files={"image": ("a.jpg", data), "min_confidence": ("c.txt", b"0.6")},
        )
        assert_problem(as_file, 422, "invalid_parameters")
        bad = http.post(
            "/v1/vision/face", files={"image": ("a.jpg", data)}, data={"min_confidence": "high"}
        )
        assert_problem(bad, 422, "invalid_parameters")


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
