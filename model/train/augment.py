"""The training augmentation of the EXTD recipe (section 6 of the spec).

With probability 0.5 data-anchor-sampling (rescale so one face lands near a
chosen anchor scale, crop a square around it), else an SSD-style square crop
(0.3 to 1 of the short side, faces kept by their centres); resize to the
training size with a random interpolation; photometric distortion;
horizontal flip; faces under 6x6 px dropped. Every random choice comes from
the generator passed in, so a seed fixes the sample.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image

from model.conventions import ANCHOR_SIZES, MEAN_RGB

MIN_FACE_AREA = 6 * 6
INTERPOLATIONS = (
    Image.Resampling.BILINEAR,
    Image.Resampling.BICUBIC,
    Image.Resampling.BOX,
    Image.Resampling.NEAREST,
    Image.Resampling.LANCZOS,
)
CROP_TRIES = 50


def photometric(pixels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Brightness +-0.125, contrast and saturation x[0.5, 1.5], hue +-18 degrees, each p=0.5."""
    image = pixels.astype(np.float32)
    if rng.random() < 0.5:
        image += rng.uniform(-0.125, 0.125) * 255
    contrast_first = rng.random() < 0.5
    if contrast_first and rng.random() < 0.5:
        image *= rng.uniform(0.5, 1.5)
    saturate, shift_hue = rng.random() < 0.5, rng.random() < 0.5
    if saturate or shift_hue:
        hsv = np.asarray(
            Image.fromarray(np.clip(image, 0, 255).astype(np.uint8)).convert("HSV"),
            dtype=np.float32,
        )
        if saturate:
            hsv[..., 1] *= rng.uniform(0.5, 1.5)
        if shift_hue:
            hsv[..., 0] = (hsv[..., 0] + rng.uniform(-18, 18) * 256 / 360) % 256
        hsv = np.clip(hsv, 0, 255).astype(np.uint8)
        image = np.asarray(Image.fromarray(hsv, mode="HSV").convert("RGB"), dtype=np.float32)
    if not contrast_first and rng.random() < 0.5:
        image *= rng.uniform(0.5, 1.5)
    return np.clip(image, 0, 255).astype(np.uint8)


def _window(
    pixels: np.ndarray,
    boxes: np.ndarray,
    origin: tuple[float, float],
    side: float,
    size: int,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """Cut the square ``side`` window at ``origin`` (mean-padded outside the image), scale it to
    ``size`` with a random interpolation, and keep the faces whose centres fall inside."""
    height, width = pixels.shape[:2]
    scale = size / side
    x0, y0 = origin
    canvas = np.empty((size, size, 3), np.uint8)
    canvas[...] = MEAN_RGB
    left, top = max(0, math.floor(x0)), max(0, math.floor(y0))
    right, bottom = min(width, math.ceil(x0 + side)), min(height, math.ceil(y0 + side))
    if right > left and bottom > top:
        tx0, ty0 = max(0, round((left - x0) * scale)), max(0, round((top - y0) * scale))
        tx1, ty1 = min(size, round((right - x0) * scale)), min(size, round((bottom - y0) * scale))
        if tx1 > tx0 and ty1 > ty0:
            part = Image.fromarray(pixels[top:bottom, left:right])
            interpolation = INTERPOLATIONS[rng.integers(len(INTERPOLATIONS))]
            canvas[ty0:ty1, tx0:tx1] = np.asarray(
                part.resize((tx1 - tx0, ty1 - ty0), interpolation)
            )
    moved = (boxes - np.array([x0, y0, x0, y0], np.float32)) * scale
    centres = (moved[:, :2] + moved[:, 2:]) / 2
    inside = ((centres >= 0) & (centres < size)).all(axis=1)
    return canvas, np.clip(moved[inside], 0, size).astype(np.float32)


def anchor_sampling(
    pixels: np.ndarray, boxes: np.ndarray, size: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """PyramidBox's data-anchor-sampling: one face rescaled to a random anchor scale at or below
    its nearest one (times 2**U(-1, 1)), then a ``size`` square crop that contains it."""
    height, width = pixels.shape[:2]
    chosen = boxes[rng.integers(len(boxes))]
    face_w, face_h = chosen[2] - chosen[0], chosen[3] - chosen[1]
    face_side = math.sqrt(max(face_w * face_h, 1.0))
    nearest = int(np.argmin([abs(a - face_side) for a in ANCHOR_SIZES]))
    target = ANCHOR_SIZES[rng.integers(nearest + 1)] * 2 ** rng.uniform(-1, 1)
    ratio = target / face_side
    side = size / ratio  # the crop, in pixels of the original image
    if side < max(height, width):
        x0 = rng.uniform(*sorted((chosen[2] - side, chosen[0])))
        y0 = rng.uniform(*sorted((chosen[3] - side, chosen[1])))
    else:
        x0 = rng.uniform(width - side, 0)
        y0 = rng.uniform(height - side, 0)
    return _window(pixels, boxes, (x0, y0), side, size, rng)


def ssd_crop(
    pixels: np.ndarray, boxes: np.ndarray, size: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """A random square of 0.3 to 1 of the short side that keeps at least one face centre."""
    height, width = pixels.shape[:2]
    for _ in range(CROP_TRIES):
        side = rng.uniform(0.3, 1.0) * min(height, width)
        x0, y0 = rng.uniform(0, width - side), rng.uniform(0, height - side)
        centres = (boxes[:, :2] + boxes[:, 2:]) / 2
        inside = (centres >= [x0, y0]) & (centres < [x0 + side, y0 + side])
        if not len(boxes) or inside.all(axis=1).any():
            return _window(pixels, boxes, (x0, y0), side, size, rng)
    side = max(height, width)
    return _window(pixels, boxes, (0.0, 0.0), side, size, rng)


def augment(
    pixels: np.ndarray, boxes: np.ndarray, *, size: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """One training sample: ``(size x size x 3 uint8, (n, 4) x1 y1 x2 y2 in its pixels)``.

    The photometric distortion is per pixel, so it runs after the crop, on the
    small training-size image rather than the full photo.
    """
    if len(boxes) and rng.random() < 0.5:
        pixels, boxes = anchor_sampling(pixels, boxes, size, rng)
    else:
        pixels, boxes = ssd_crop(pixels, boxes, size, rng)
    pixels = photometric(pixels, rng)
    if rng.random() < 0.5:
        pixels = pixels[:, ::-1]
        boxes = np.c_[size - boxes[:, 2], boxes[:, 1], size - boxes[:, 0], boxes[:, 3]]
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return np.ascontiguousarray(pixels), boxes[area >= MIN_FACE_AREA].astype(np.float32)
