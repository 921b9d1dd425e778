import numpy as np
import pytest
import samples
from PIL import Image

from model.errors import ImageError, ImageTooLargeError
from model.images import open_image, read_header, to_rgb_array


@pytest.fixture(scope="module")
def photo(dev_images):
    return dev_images[0]


def test_real_jpeg_decodes_to_rgb_uint8(photo):
    array = open_image(photo)
    assert array.dtype == np.uint8
    assert array.shape == (768, 1024, 3)
    assert array.flags.writeable


def test_text_file_is_not_an_image(tmp_path):
    path = tmp_path / "notes.jpg"
    path.write_text("hello, I am not a picture")
    with pytest.raises(ImageError, match="not an image"):
        open_image(path)
    with pytest.raises(ImageError, match="not an image"):
        open_image(b"")


def test_truncated_jpeg_is_a_clear_error(photo):
    with pytest.raises(ImageError, match="corrupt or truncated"):
        open_image(samples.truncated_jpeg(photo))


def test_missing_file(tmp_path):
    with pytest.raises(ImageError, match="no such file"):
        open_image(tmp_path / "nothing.png")


def test_bomb_is_refused_from_its_header():
    bomb = samples.png_bomb()
    assert len(bomb) < 1_000_000
    with pytest.raises(ImageTooLargeError, match="pixels"):
        open_image(bomb, max_pixels=50_000_000)
    # Without a limit of ours, Pillow's own bomb guard still refuses it.
    with pytest.raises(ImageTooLargeError):
        open_image(bomb)


def test_one_pixel_image():
    array = open_image(samples.encode(Image.new("RGB", (1, 1), (10, 20, 30)), "PNG"))
    assert array.tolist() == [[[10, 20, 30]]]


def test_cmyk_becomes_rgb(photo):
    array = open_image(samples.cmyk_jpeg(photo))
    assert array.shape == (768, 1024, 3)
    assert abs(float(array.mean()) - float(open_image(photo).mean())) < 10


def test_sixteen_bit_is_scaled_not_clipped(photo):
    array = open_image(samples.sixteen_bit_png(photo))
    grey = np.asarray(Image.open(photo).convert("L"))
    assert np.array_equal(array[..., 0], grey)


def test_exif_orientation_is_applied(photo):
    upright = open_image(photo)
    assert np.array_equal(open_image(samples.exif_rotated_png(photo)), upright)
    assert open_image(samples.exif_rotated_jpeg(photo)).shape == upright.shape


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (np.zeros((4, 4, 3), dtype=np.float32), "uint8"),
        (np.zeros((4, 4, 4), dtype=np.uint8), "shape"),
        (np.zeros((0, 4, 3), dtype=np.uint8), "empty"),
        ([[1, 2, 3]], "numpy array"),
    ],
)
def test_bad_arrays(value, message):
    with pytest.raises(ImageError, match=message):
        to_rgb_array(value)


def test_grey_arrays_and_pil_modes():
    assert to_rgb_array(np.full((3, 5), 7, dtype=np.uint8)).shape == (3, 5, 3)
    for mode in ("L", "LA", "P", "RGBA", "1", "I;16"):
        assert to_rgb_array(Image.new(mode, (6, 4))).shape == (4, 6, 3)


@pytest.mark.parametrize(
    "encode", [samples.exif_rotated_jpeg, samples.cmyk_jpeg], ids=["exif-rotated", "cmyk"]
)
def test_jpegs_decode_at_reduced_size_upright(dev_images, encode):
    data = encode(dev_images[0])
    full = open_image(data)
    assert read_header(data).size == full.shape[:2] == (768, 1024)
    small = open_image(data, at_least=(300, 500))
    assert small.shape == (384, 512, 3)  # the 1/2 scale: the smallest that covers 500x300
    shrunk = Image.fromarray(full).resize((512, 384), Image.Resampling.BOX)
    assert np.abs(np.asarray(shrunk, np.float32) - small).mean() < 4  # the same picture, upright
