import io

import numpy as np
import pytest
import samples
from PIL import Image

from model.errors import ImageError, ImageTooLargeError
from model.images import (
    BACKGROUND,
    encode_image,
    flatten,
    open_image,
    read_header,
    to_rgb_array,
    upright_exif,
)


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


def test_what_alpha_hides_reads_as_the_background_and_alpha_comes_on_request():
    picture = np.asarray(samples.transparent_photo())
    alpha = picture[..., 3]
    data = samples.encode(Image.fromarray(picture), "PNG")
    colours = open_image(data)
    assert colours.shape == (120, 160, 3)
    assert (colours[alpha == 0] == BACKGROUND).all()
    np.testing.assert_array_equal(colours[alpha > 0], picture[alpha > 0, :3])
    with_alpha = open_image(data, keep_alpha=True)
    np.testing.assert_array_equal(with_alpha[..., :3], colours)
    np.testing.assert_array_equal(with_alpha[..., 3], alpha)
    # Without transparency there is nothing to keep: RGB, as ever.
    assert open_image(samples.photo(), keep_alpha=True).shape == (120, 160, 3)
    assert open_image(samples.photo(fmt="PNG"), keep_alpha=True).shape == (120, 160, 3)


def test_alpha_turns_upright_with_the_colours():
    picture = samples.transparent_photo()
    exif = Image.Exif()
    exif[0x0112] = 6  # stored a quarter turn away
    data = samples.encode(picture.transpose(Image.Transpose.ROTATE_90), "PNG", exif=exif)
    upright = open_image(data, keep_alpha=True)
    np.testing.assert_array_equal(upright[..., 3], np.asarray(picture)[..., 3])


@pytest.mark.parametrize("mode", ["LA", "P", "RGB"])
def test_every_kind_of_transparency_comes_as_alpha(mode):
    picture, options = samples.transparent_photo(), {}
    if mode == "LA":
        picture = picture.convert("LA")
        expected = np.asarray(picture)[..., 1]
    elif mode == "P":  # a palette entry marked transparent (tRNS)
        picture = picture.convert("RGB").quantize(16)
        options["transparency"] = 0
        expected = (np.asarray(picture) != 0) * 255
    else:  # a colour marked transparent (tRNS)
        picture = picture.convert("RGB")
        options["transparency"] = samples.SECRET
        expected = (np.asarray(picture) != samples.SECRET).any(axis=2) * 255
    decoded = open_image(samples.encode(picture, "PNG", **options), keep_alpha=True)
    np.testing.assert_array_equal(decoded[..., 3], expected)


def test_alpha_is_written_back_as_is_and_a_jpeg_is_the_picture_on_white():
    rgba = np.asarray(samples.transparent_photo())
    colours, alpha = rgba[..., :3], rgba[..., 3]
    for fmt in ("png", "webp"):
        written = Image.open(io.BytesIO(encode_image(colours, fmt, alpha=alpha)))
        assert written.mode == "RGBA"
        np.testing.assert_array_equal(np.asarray(written)[..., 3], alpha)
    png = np.asarray(Image.open(io.BytesIO(encode_image(colours, "png", alpha=alpha))))
    np.testing.assert_array_equal(png[..., :3], colours)
    jpeg = Image.open(io.BytesIO(encode_image(colours, "jpeg", alpha=alpha)))
    assert jpeg.mode == "RGB"
    assert np.abs(np.asarray(jpeg, float) - flatten(colours, alpha)).mean() < 3


def test_flatten_shows_the_background_where_the_picture_is_transparent():
    colours = np.array([[[10, 20, 30]] * 3], np.uint8)
    shown = flatten(colours, np.array([[0, 128, 255]], np.uint8))
    assert shown[0, 0].tolist() == list(BACKGROUND)
    assert shown[0, 2].tolist() == [10, 20, 30]
    assert np.abs(shown[0, 1].astype(int) - [133, 138, 143]).max() <= 1
    assert flatten(colours, None) is colours


@pytest.mark.parametrize(("fmt", "kind"), [("GIF", "GIF"), ("WEBP", "WebP"), ("PNG", "APNG")])
def test_animations_are_refused_not_read_as_their_first_frame(fmt, kind):
    animation = samples.animation(fmt)
    with pytest.raises(ImageError, match=f"animated .*{kind}.*send it as a video"):
        read_header(animation)
    with pytest.raises(ImageError, match="animated"):
        open_image(animation)
    still = samples.encode(Image.open(io.BytesIO(samples.photo(fmt="PNG"))), fmt)
    assert open_image(still).shape == (120, 160, 3)


def test_the_header_carries_the_exif_written_back_upright(photo):
    header = read_header(samples.exif_rotated_jpeg(photo))
    assert header.orientation == 6
    exif = Image.Exif()
    exif.load(upright_exif(header))
    assert exif[0x0112] == 1
    assert upright_exif(read_header(samples.photo())) is None
