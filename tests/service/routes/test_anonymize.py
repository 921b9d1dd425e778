"""``/v1/anonymize`` in process over random weights: hidden masks, formats, metadata, errors."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
import samples
from helpers import assert_problem
from PIL import Image

from model.anonymize import AnonymizeOptions, face_mask

SOLID = {"method": "solid", "color": "#ff00ff", "score_threshold": 0.05}


def post(client, payload: bytes, params: dict, *, json_variant: bool = False, **kwargs):
    headers = {"accept": "application/json"} if json_variant else {}
    return client.post(
        "/v1/anonymize",
        params=params,
        files={"image": ("photo", payload)},
        headers=headers,
        **kwargs,
    )


def faces_of(answer: dict) -> np.ndarray:
    return np.array([[*f["box"], f["score"]] for f in answer["faces"]]).reshape(-1, 5)


def test_solid_masks_are_the_colour_and_the_rest_is_untouched(client):
    photo = samples.photo(200, 150, "PNG")
    answer = post(client, photo, SOLID, json_variant=True).json()
    assert (answer["width"], answer["height"], answer["format"]) == (200, 150, "png")
    faces = faces_of(answer)
    assert len(faces) >= 1
    hidden = np.asarray(Image.open(io.BytesIO(base64.b64decode(answer["image"]))))
    original = np.asarray(Image.open(io.BytesIO(photo)).convert("RGB"))
    mask = face_mask((150, 200), faces, AnonymizeOptions(method="solid"))
    inside = hidden[mask]
    # Boxes in the JSON are rounded to 0.01 pixel: a pixel on the rim may differ.
    assert (inside == [255, 0, 255]).all(axis=1).mean() > 0.97
    unchanged = ~face_mask((150, 200), faces, AnonymizeOptions(method="solid", mask_scale=1.6))
    np.testing.assert_array_equal(hidden[unchanged], original[unchanged])


def test_the_image_answer_keeps_size_and_format(client):
    for fmt, media in (("JPEG", "image/jpeg"), ("PNG", "image/png"), ("WEBP", "image/webp")):
        response = post(client, samples.photo(96, 64, fmt), {})
        assert response.status_code == 200, response.text
        assert response.headers["content-type"] == media
        assert int(response.headers["x-faces"]) >= 0
        assert Image.open(io.BytesIO(response.content)).size == (96, 64)
    bmp = post(client, samples.photo(96, 64, "BMP"), {})
    assert bmp.headers["content-type"] == "image/png"
    webp = post(client, samples.photo(96, 64, "JPEG"), {"format": "webp"})
    assert Image.open(io.BytesIO(webp.content)).format == "WEBP"


def test_json_base64_body(client):
    encoded = base64.b64encode(samples.photo()).decode()
    response = client.post("/v1/anonymize", json={"image": encoded})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/jpeg"


def gps_exif_rotated_jpeg() -> bytes:
    image = Image.open(io.BytesIO(samples.photo(200, 100))).transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 6  # stored a quarter turn away: upright it is 200 x 100
    exif[0x010F] = "Camera maker"
    exif.get_ifd(0x8825)[2] = (48.0, 51.0, 30.0)  # GPS latitude
    return samples.encode(image, "JPEG", quality=95, exif=exif)


def test_metadata_is_stripped_unless_kept_and_the_answer_is_upright(client):
    photo = gps_exif_rotated_jpeg()
    stripped = Image.open(io.BytesIO(post(client, photo, {}).content))
    assert stripped.size == (200, 100)
    assert not stripped.getexif()
    assert "exif" not in stripped.info
    kept = Image.open(io.BytesIO(post(client, photo, {"keep_metadata": "true"}).content))
    assert kept.size == (200, 100)
    exif = kept.getexif()
    assert exif[0x0112] == 1  # the pixels are upright now
    assert exif[0x010F] == "Camera maker"
    assert exif.get_ifd(0x8825)[2] == (48.0, 51.0, 30.0)


@pytest.mark.parametrize(
    "params",
    [
        {"method": "swirl"},
        {"shape": "star"},
        {"mask_scale": 0.5},
        {"mask_scale": 10},
        {"color": "blue-ish"},
        {"format": "gif"},
        {"min_face": -1},
    ],
)
def test_bad_parameters(client, params):
    assert_problem(post(client, samples.photo(), params), 422, "invalid_parameters")


def test_bad_uploads(client):
    assert_problem(post(client, b"not an image", {}), 415, "unsupported_image")
    two = client.post(
        "/v1/anonymize",
        files=[("image", ("a", samples.photo())), ("image", ("b", samples.photo()))],
    )
    assert assert_problem(two, 422, "too_many_images")["limit"] == 1
    assert_problem(post(client, samples.photo(), {"model": "nope"}), 404, "model_not_found")
    bomb = post(client, samples.png_bomb(), {})
    assert_problem(bomb, 413, "image_too_large")
