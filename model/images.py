"""Turning files, bytes, PIL images and arrays into upright RGB uint8 arrays.

Every failure is an :class:`ImageError` with a message a user can act on;
nothing half-decoded reaches the network.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import simplejpeg
from PIL import Image, ImageOps, UnidentifiedImageError

ImageInput = Image.Image | np.ndarray | str | Path


class ImageError(ValueError):
    """The input is not a usable image."""


class ImageTooLargeError(ImageError):
    """The image has more pixels than allowed; raised before the pixels are decoded."""


def _pil_to_rgb(image: Image.Image) -> np.ndarray:
    image = ImageOps.exif_transpose(image)
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        # 16-bit (or 32-bit int) grey: scale to 8 bits instead of clipping at 255.
        depth = 65535 if image.mode.startswith("I;16") else max(255, int(np.asarray(image).max()))
        grey = np.asarray(image, dtype=np.float64) * (255.0 / depth)
        return np.repeat(np.clip(grey + 0.5, 0, 255).astype(np.uint8)[..., None], 3, axis=2)
    if image.mode == "F":
        grey = np.clip(np.asarray(image, dtype=np.float64), 0, 255).astype(np.uint8)
        return np.repeat(grey[..., None], 3, axis=2)
    return np.array(image.convert("RGB"), dtype=np.uint8)


@contextmanager
def _opened(source: bytes | str | Path, max_pixels: int | None) -> Iterator[Image.Image]:
    """The image with only its header read (refused over ``max_pixels``); every failure,
    now or while decoding in the caller's block, as an :class:`ImageError`."""
    name = image_name(source)
    stream = io.BytesIO(source) if isinstance(source, bytes) else source
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(stream) as image:
                width, height = image.size
                if max_pixels is not None and width * height > max_pixels:
                    raise ImageTooLargeError(
                        f"{name}: {width}x{height} is {width * height} pixels, "
                        f"over the limit of {max_pixels}"
                    )
                yield image
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise ImageTooLargeError(f"{name}: {error}") from error
    except FileNotFoundError as error:
        raise ImageError(f"{name}: no such file") from error
    except UnidentifiedImageError as error:
        raise ImageError(f"{name}: not an image, or a format that is not supported") from error
    except ImageError:
        raise
    except (OSError, ValueError, SyntaxError, EOFError) as error:
        raise ImageError(f"{name}: corrupt or truncated image ({error})") from error


# EXIF orientation -> the transpose that makes the stored image upright (as exif_transpose).
_ORIENTATION = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
# Orientations that turn the stored image by 90 degrees.
_TURNED = {5, 6, 7, 8}


def _orientation(image: Image.Image) -> int:
    """The header's EXIF orientation (1: stored upright)."""
    return image.getexif().get(0x0112, 1)


def image_size(source: bytes | str | Path, *, max_pixels: int | None = None) -> tuple[int, int]:
    """Upright ``(width, height)`` from the header alone, so work can be refused or planned
    before decoding."""
    with _opened(source, max_pixels) as image:
        width, height = image.size
        return (height, width) if _orientation(image) in _TURNED else (width, height)


def open_image(
    source: bytes | str | Path,
    *,
    max_pixels: int | None = None,
    at_least: tuple[int, int] | None = None,
) -> np.ndarray:
    """Decode an encoded image into an upright ``H x W x 3`` RGB uint8 array.

    The header is read first: an image over ``max_pixels`` is refused before
    any pixel is decoded, so decompression bombs cost nothing. With
    ``at_least`` (an upright ``(width, height)``), a JPEG is decoded at the
    smallest 1/2, 1/4 or 1/8 scale that still covers it (libjpeg-turbo's DCT
    scaling through simplejpeg, else PIL's ``draft``): a 12 MP photo bound for
    a 2 MP network input decodes several times faster. The caller resizes the
    rest of the way.
    """
    name = image_name(source)
    with _opened(source, max_pixels) as image:
        if at_least is not None and image.format == "JPEG":
            orientation = _orientation(image)
            width, height = at_least[::-1] if orientation in _TURNED else at_least
            if isinstance(source, bytes):
                scaled = _decode_jpeg_scaled(source, width, height)
                if scaled is not None:
                    return check_array(_upright(scaled, orientation), name=name)
            image.draft(None, (width, height))
        image.load()
        return check_array(_pil_to_rgb(image), name=name)


def _decode_jpeg_scaled(data: bytes, width: int, height: int) -> np.ndarray | None:
    """RGB pixels at the smallest DCT scale covering ``width x height`` (stored orientation),
    or None where libjpeg-turbo cannot give RGB (a CMYK JPEG): PIL decodes those."""
    try:
        return simplejpeg.decode_jpeg(data, colorspace="RGB", min_width=width, min_height=height)
    except (ValueError, RuntimeError):
        return None


def _upright(pixels: np.ndarray, orientation: int) -> np.ndarray:
    """Apply an EXIF orientation to pixels decoded without PIL."""
    method = _ORIENTATION.get(orientation)
    return pixels if method is None else np.asarray(Image.fromarray(pixels).transpose(method))


def image_name(source: bytes | str | Path) -> str:
    return "image bytes" if isinstance(source, bytes) else str(source)


def check_array(array: np.ndarray, *, name: str = "array") -> np.ndarray:
    """Validate an ``H x W x 3`` (or ``H x W`` grey) uint8 array; returns it as RGB."""
    if not isinstance(array, np.ndarray):
        raise ImageError(f"{name}: expected a numpy array, got {type(array).__name__}")
    if array.dtype != np.uint8:
        raise ImageError(f"{name}: expected dtype uint8, got {array.dtype}")
    if array.ndim == 2:
        array = np.repeat(array[..., None], 3, axis=2)
    if array.ndim != 3 or array.shape[2] != 3:
        raise ImageError(f"{name}: expected shape (H, W, 3) or (H, W), got {array.shape}")
    if array.shape[0] < 1 or array.shape[1] < 1:
        raise ImageError(f"{name}: empty image {array.shape}")
    return array


def to_rgb_array(image: ImageInput) -> np.ndarray:
    """Accept a PIL image, a uint8 array (RGB) or a file path."""
    if isinstance(image, (str, Path)):
        return open_image(Path(image))
    if isinstance(image, Image.Image):
        try:
            return check_array(_pil_to_rgb(image), name="PIL image")
        except (OSError, ValueError) as error:
            raise ImageError(f"PIL image: cannot be read ({error})") from error
    return check_array(image)
