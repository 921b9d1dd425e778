"""Hiding faces: masks, methods, the pixels outside left alone."""

import numpy as np
import pytest

from model.anonymize import AnonymizeOptions, anonymize, face_mask, parse_color
from model.errors import OptionsError

FACES = np.array([[40, 30, 80, 90, 0.9], [150, 100, 170, 124, 0.6]], np.float32)


@pytest.fixture(scope="module")
def picture() -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (160, 240, 3), dtype=np.uint8)


def test_solid_fills_exactly_the_mask(picture):
    options = AnonymizeOptions(method="solid", color="#ff8000")
    hidden = anonymize(picture, FACES, options)
    mask = face_mask(picture.shape[:2], FACES, options)
    assert (hidden[mask] == [255, 128, 0]).all()
    np.testing.assert_array_equal(hidden[~mask], picture[~mask])
    assert picture.flags.writeable
    assert not np.shares_memory(hidden, picture)


def test_masks_grow_about_the_centre_and_take_the_shape():
    box = np.array([[100, 100, 140, 160, 1.0]])
    ellipse = face_mask((300, 300), box, AnonymizeOptions(mask_scale=1.0, shape="ellipse"))
    square = face_mask((300, 300), box, AnonymizeOptions(mask_scale=1.0, shape="box"))
    assert square.sum() == 40 * 60
    assert abs(ellipse.sum() / square.sum() - np.pi / 4) < 0.02
    assert ellipse[130, 120]
    assert not ellipse[100, 100]
    grown = face_mask((300, 300), box, AnonymizeOptions(mask_scale=2.0, shape="box"))
    rows, cols = np.nonzero(grown)
    assert (rows.min(), rows.max(), cols.min(), cols.max()) == (70, 189, 80, 159)


def test_masks_are_clipped_to_the_image():
    edge = np.array([[-20, -20, 30, 30, 1.0], [5, 5, 5, 9, 1.0]])  # out of frame; zero wide
    mask = face_mask((50, 50), edge, AnonymizeOptions(shape="box"))
    assert mask.shape == (50, 50)
    assert mask[0, 0]
    assert mask[:, 45:].sum() == 0


@pytest.mark.parametrize("method", ["blur", "pixelate"])
def test_blur_and_pixelate_erase_the_detail_inside_only(picture, method):
    options = AnonymizeOptions(method=method, shape="box", mask_scale=1.0)
    hidden = anonymize(picture, FACES[:1], options)
    mask = face_mask(picture.shape[:2], FACES[:1], options)
    np.testing.assert_array_equal(hidden[~mask], picture[~mask])
    inside = hidden[30:90, 40:80].astype(np.float32)
    original = picture[30:90, 40:80].astype(np.float32)
    # Noise has large neighbour differences; a hidden face has almost none.
    assert np.abs(np.diff(inside, axis=1)).mean() < 0.2 * np.abs(np.diff(original, axis=1)).mean()


def test_no_faces_is_a_copy(picture):
    np.testing.assert_array_equal(anonymize(picture, np.zeros((0, 5)), AnonymizeOptions()), picture)


@pytest.mark.parametrize(
    ("text", "rgb"), [("#000", (0, 0, 0)), ("ff8000", (255, 128, 0)), (" 1, 2,3 ", (1, 2, 3))]
)
def test_colours_parse(text, rgb):
    assert parse_color(text) == rgb


@pytest.mark.parametrize(
    "options",
    [
        {"method": "swirl"},
        {"shape": "star"},
        {"mask_scale": 0.5},
        {"mask_scale": 9},
        {"color": "blue-ish"},
        {"color": "300,0,0"},
    ],
)
def test_bad_options_are_refused(options):
    with pytest.raises(OptionsError):
        AnonymizeOptions(**options)
