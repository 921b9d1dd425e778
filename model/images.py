"""Turning files, bytes, PIL images and arrays into upright RGB uint8 arrays, and back.

An encoded image is read in two steps: :func:`read_header` (size, format,
EXIF orientation; no pixel is decoded, so work can be refused or planned
first) and :func:`open_image` (the pixels, upright). Sizes are ``(height,
width)`` throughout. Every failure is an :class:`ImageError` with a message a
user can act on; nothing half-decoded reaches the network.

Transparency: a pixel under alpha 0 was never shown, so it is neither kept
nor looked at: its colour reads as :data:`BACKGROUND`. The detector sees the
colour channels (every face they hold, however faint its alpha); the alpha
channel can come along (``keep_alpha``) to be written back unchanged by
:func:`encode_image`, or flattened on :data:`BACKGROUND` for a JPEG.
Animated images are refused rather than read as their first frame.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import simplejpeg
from PIL import Image, ImageOps, UnidentifiedImageError

from model.errors import ImageError, ImageTooLargeError, TooManyScansError

ImageInput = Image.Image | np.ndarray | str | Path
Source = bytes | str | Path
Size = tuple[int, int]  # (height, width)

# Scans a progressive JPEG may have. libjpeg's progression writes 10 (colour) or 6 (grey),
# mozjpeg's searched ones stay near that; every scan decodes the whole image again, so a
# few hundred copies of one scan make a 200 KB file cost a minute of CPU.
MAX_JPEG_SCANS = 50
_START_OF_SCAN = b"\xff\xda"  # entropy-coded data stuffs 0xFF with 0x00: only markers match
# Colour modes libjpeg-turbo decodes to RGB itself (CMYK and YCCK go through PIL).
_TURBO_MODES = {"RGB", "L", "YCbCr"}
# What a photo with alpha shows where it is transparent: the colour its pixels under alpha 0
# read as once decoded, and the background a JPEG of it (no alpha) is flattened on.
BACKGROUND = (255, 255, 255)
# Formats whose extra frames are an animation (an MPO's are a camera's other views).
_ANIMATIONS = {"GIF": "GIF", "PNG": "PNG (APNG)", "WEBP": "WebP"}
# 16- and 32-bit integer grey: scaled to 8 bits by hand (as float grey), transparency ignored.
_DEEP_GREY = ("I;16", "I;16B", "I;16L", "I;16N", "I")


@dataclass(frozen=True)
class ImageHeader:
    """What an encoded image's header says, read without decoding any pixel."""

    height: int  # upright: the EXIF orientation applied
    width: int
    format: str  # PIL's name: JPEG, PNG, WEBP, ...
    mode: str  # PIL's colour mode as stored: RGB, L, CMYK, P, I;16, ...
    orientation: int = 1  # EXIF orientation, 1 = stored upright
    exif: bytes | None = field(default=None, repr=False)  # the EXIF block, as stored

    @property
    def size(self) -> Size:
        return self.height, self.width

    @property
    def turned(self) -> bool:
        """Stored a quarter turn away from upright (orientations 5 to 8)."""
        return self.orientation in _TURNED


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
_TURNED = {5, 6, 7, 8}


def image_name(source: Source) -> str:
    return "image bytes" if isinstance(source, bytes) else str(source)


def _read(source: Source) -> bytes:
    if isinstance(source, bytes):
        return source
    try:
        return Path(source).read_bytes()
    except FileNotFoundError as error:
        raise ImageError(f"{source}: no such file") from error
    except OSError as error:
        raise ImageError(f"{source}: cannot be read ({error.strerror})") from error


@contextmanager
def _opened(data: bytes, name: str) -> Iterator[Image.Image]:
    """The image with only its header read; every failure, now or while decoding in the
    caller's block, as an :class:`ImageError`."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:
                yield image
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise ImageTooLargeError(f"{name}: {error}") from error
    except UnidentifiedImageError as error:
        raise ImageError(f"{name}: not an image, or a format that is not supported") from error
    except ImageError:
        raise
    except (OSError, ValueError, SyntaxError, EOFError) as error:
        raise ImageError(f"{name}: corrupt or truncated image ({error})") from error


def _orientation(image: Image.Image) -> int:
    """The EXIF orientation from what opening the file has already read. A PNG's is its
    ``eXIf`` chunk before the pixels: Pillow's ``getexif`` would decode the whole image to
    look for one after them."""
    if image.format == "PNG":
        raw = image.info.get("exif")
        if not raw:
            return 1
        exif = Image.Exif()
        try:
            exif.load(raw)
        except (OSError, ValueError, SyntaxError):
            return 1
        return int(exif.get(0x0112, 1))
    try:
        return int(image.getexif().get(0x0112, 1))
    except (OSError, ValueError, SyntaxError, TypeError):
        return 1


def _header(image: Image.Image, data: bytes, name: str, max_pixels: int | None) -> ImageHeader:
    width, height = image.size
    if max_pixels is not None and width * height > max_pixels:
        raise ImageTooLargeError(
            f"{name}: {width}x{height} is {width * height} pixels, over the limit of {max_pixels}"
        )
    if image.format == "JPEG" and (scans := data.count(_START_OF_SCAN)) > MAX_JPEG_SCANS:
        raise TooManyScansError(
            f"{name}: a JPEG of {scans} scans, more than any encoder writes "
            f"(at most {MAX_JPEG_SCANS} are decoded)"
        )
    if image.format in _ANIMATIONS and getattr(image, "is_animated", False):
        raise ImageError(
            f"{name}: an animated {_ANIMATIONS[image.format]}, and only still images are read "
            "(its other frames would be lost): send it as a video, or frame by frame"
        )
    orientation = _orientation(image)
    if orientation not in _ORIENTATION:
        orientation = 1
    if orientation in _TURNED:
        width, height = height, width
    exif = image.info.get("exif") or None
    return ImageHeader(height, width, image.format or "", image.mode, orientation, exif)


def read_header(source: Source, *, max_pixels: int | None = None) -> ImageHeader:
    """Upright size, format, orientation and EXIF from the header alone: an image over
    ``max_pixels`` (or a JPEG of too many scans, or an animation) is refused before any
    pixel is decoded, so decompression bombs cost nothing."""
    data, name = _read(source), image_name(source)
    with _opened(data, name) as image:
        return _header(image, data, name, max_pixels)


def open_image(
    source: Source,
    *,
    max_pixels: int | None = None,
    at_least: Size | None = None,
    keep_alpha: bool = False,
) -> np.ndarray:
    """Decode an encoded image into an upright ``H x W x 3`` RGB uint8 array (``H x W x 4``
    RGBA with ``keep_alpha``, for an image that has transparency).

    The header is checked first (:func:`read_header`'s limits). With
    ``at_least`` (an upright ``(height, width)``), a JPEG is decoded at the
    smallest 1/2, 1/4 or 1/8 scale that still covers it (libjpeg-turbo's DCT
    scaling): a 12 MP photo bound for a 2 MP network input decodes several
    times faster; the caller resizes the rest of the way. Each image is
    decoded once: a JPEG that libjpeg-turbo refuses is corrupt, not retried.
    Colours under alpha 0 read as :data:`BACKGROUND`.
    """
    data, name = _read(source), image_name(source)
    with _opened(data, name) as image:
        header = _header(image, data, name, max_pixels)
        if header.format == "JPEG" and header.mode in _TURBO_MODES:
            pixels = _decode_jpeg(data, name, header, at_least)
        else:
            if at_least is not None and header.format == "JPEG":  # CMYK: PIL's own scaling
                height, width = at_least[::-1] if header.turned else at_least
                image.draft(None, (width, height))
            image.load()
            pixels = _pil_to_rgb(image, keep_alpha=keep_alpha)
    pixels = _upright(pixels, header.orientation)
    return pixels if pixels.shape[2] == 4 else check_array(pixels, name=name)


def _decode_jpeg(data: bytes, name: str, header: ImageHeader, at_least: Size | None) -> np.ndarray:
    """RGB pixels from libjpeg-turbo, in stored orientation, at the smallest DCT scale that
    covers ``at_least`` (upright), or in full."""
    height, width = (0, 0) if at_least is None else at_least
    if header.turned:
        height, width = width, height
    try:
        return simplejpeg.decode_jpeg(data, colorspace="RGB", min_width=width, min_height=height)
    except (ValueError, RuntimeError) as error:
        raise ImageError(f"{name}: corrupt or truncated JPEG ({error})") from error


def _pil_to_rgb(image: Image.Image, *, keep_alpha: bool = False) -> np.ndarray:
    """Decoded pixels as RGB uint8 (RGBA with ``keep_alpha`` where the image has
    transparency), in stored orientation; colours under alpha 0 are :data:`BACKGROUND`."""
    if image.has_transparency_data and image.mode not in (*_DEEP_GREY, "F"):
        rgba = np.array(image if image.mode == "RGBA" else image.convert("RGBA"), np.uint8)
        rgba[rgba[..., 3] == 0, :3] = BACKGROUND
        return rgba if keep_alpha else np.ascontiguousarray(rgba[..., :3])
    if image.mode in _DEEP_GREY:
        # 16-bit (or 32-bit int) grey: scale to 8 bits instead of clipping at 255.
        depth = 65535 if image.mode.startswith("I;16") else max(255, int(np.asarray(image).max()))
        grey = np.asarray(image, dtype=np.float64) * (255.0 / depth)
        return np.repeat(np.clip(grey + 0.5, 0, 255).astype(np.uint8)[..., None], 3, axis=2)
    if image.mode == "F":
        grey = np.clip(np.asarray(image, dtype=np.float64), 0, 255).astype(np.uint8)
        return np.repeat(grey[..., None], 3, axis=2)
    return np.array(image.convert("RGB"), dtype=np.uint8)


def _upright(pixels: np.ndarray, orientation: int) -> np.ndarray:
    """Apply an EXIF orientation to decoded pixels."""
    method = _ORIENTATION.get(orientation)
    return pixels if method is None else np.asarray(Image.fromarray(pixels).transpose(method))


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
    """Accept a PIL image (its EXIF orientation applied), a uint8 array (RGB) or a file path."""
    if isinstance(image, (str, Path)):
        return open_image(Path(image))
    if isinstance(image, Image.Image):
        try:
            return check_array(_pil_to_rgb(ImageOps.exif_transpose(image)), name="PIL image")
        except (OSError, ValueError) as error:
            raise ImageError(f"PIL image: cannot be read ({error})") from error
    return check_array(image)


# Output formats by name, and what an input format is written back as.
OUTPUT_FORMATS = {"jpeg": "JPEG", "png": "PNG", "webp": "WEBP"}
_WRITTEN_AS = {"JPEG": "jpeg", "MPO": "jpeg", "PNG": "png", "WEBP": "webp"}
MEDIA_TYPES = {"jpeg": "image/jpeg", "png": "image/png", "webp": "image/webp"}


def output_format(header: ImageHeader) -> str:
    """The output format an image is written back in: its own, PNG for the rest."""
    return _WRITTEN_AS.get(header.format, "png")


def upright_exif(header: ImageHeader) -> bytes | None:
    """The image's EXIF block with the orientation reset to upright (the pixels written
    with it are upright already), or None when it has none."""
    if not header.exif:
        return None
    exif = Image.Exif()
    try:
        exif.load(header.exif)
    except (OSError, ValueError, SyntaxError):
        return None
    exif[0x0112] = 1
    return exif.tobytes()


def flatten(pixels: np.ndarray, alpha: np.ndarray | None) -> np.ndarray:
    """``H x W x 3`` RGB pixels seen through ``alpha`` on :data:`BACKGROUND`: the picture as
    shown, for a format without alpha (what is under alpha 0 is not in it)."""
    if alpha is None:
        return pixels
    shown = Image.fromarray(np.dstack([pixels, alpha]))
    behind = Image.new("RGBA", shown.size, (*BACKGROUND, 255))
    return np.asarray(Image.alpha_composite(behind, shown).convert("RGB"))


def encode_image(
    pixels: np.ndarray,
    fmt: str,
    *,
    alpha: np.ndarray | None = None,
    quality: int = 90,
    exif: bytes | None = None,
) -> bytes:
    """``H x W x 3`` RGB pixels as a ``jpeg``, ``png`` or ``webp`` file. With ``alpha``
    (``H x W``), a PNG or WebP keeps it as is and a JPEG is :func:`flatten`-ed. Nothing of the
    original's metadata is written unless ``exif`` is given."""
    buffer = io.BytesIO()
    options: dict = {"exif": exif} if exif else {}
    if fmt in ("jpeg", "webp"):
        options["quality"] = quality
    if alpha is not None:
        pixels = flatten(pixels, alpha) if fmt == "jpeg" else np.dstack([pixels, alpha])
    Image.fromarray(pixels).save(buffer, format=OUTPUT_FORMATS[fmt], **options)
    return buffer.getvalue()
