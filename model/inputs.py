"""The one way an image becomes network input: plan from the header, decode, batch.

1. :func:`plan_input`: from the upright size (an :class:`~model.images.ImageHeader`
   or an array's shape) and the :class:`~model.options.ScalePolicy`, the size
   the network sees the image at and its padded input shape. Cheap: the
   service refuses work on it before any pixel is decoded.
2. :func:`decode`: the pixels, a JPEG only as large as the plan needs (DCT
   scaling); :func:`prepare` for pixels already decoded.
3. :func:`network_batch`: resized to the plan, mean subtracted, padded.

Sizes are ``(height, width)`` everywhere; the API edges convert.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from model.conventions import MEAN_RGB
from model.images import Size, Source, open_image, read_header
from model.options import ScalePolicy


@dataclass(frozen=True)
class InputPlan:
    """How one image will run, decided before it is decoded."""

    size: Size  # the upright image as given: boxes are reported in its pixels
    resized: Size  # what the network sees of it
    input_shape: Size  # the network input: ``resized`` padded to its bucket, or exactly it
    min_face: int | None = None  # smaller faces (in pixels of ``size``) are dropped

    @property
    def input_pixels(self) -> int:
        return self.input_shape[0] * self.input_shape[1]

    @property
    def scale(self) -> float:
        """Network input pixels per pixel of the image (below 1: the image was shrunk)."""
        return self.resized[1] / self.size[1]


@dataclass(frozen=True)
class PreparedImage:
    """Decoded upright pixels (possibly smaller than the plan's size) ready for a batch."""

    pixels: Tensor  # RGB: what the network sees
    plan: InputPlan
    flip: bool = False
    alpha: np.ndarray | None = None  # H x W, of an image with transparency decoded to write
    # Filled by Detector.run: milliseconds its forward pass spent resizing, in the network
    # and in post-processing (the batch's, shared by the images that ran in it).
    timings_ms: dict[str, float] = field(default_factory=dict, compare=False, repr=False)

    @property
    def input_shape(self) -> Size:
        return self.plan.input_shape


def plan_input(size: Size, policy: ScalePolicy, bucket_step: int) -> InputPlan:
    """The sizes an upright ``(height, width)`` image runs at under ``policy``: padded to
    multiples of ``bucket_step`` unless the policy asks for an exact scale."""
    height, width = size
    factor = policy.factor(height, width)
    resized = (max(1, round(height * factor)), max(1, round(width * factor)))
    if policy.exact:
        return InputPlan(size, resized, resized, policy.min_face)
    padded = (
        -(-resized[0] // bucket_step) * bucket_step,
        -(-resized[1] // bucket_step) * bucket_step,
    )
    return InputPlan(size, resized, padded, policy.min_face)


def prepare(pixels: np.ndarray, plan: InputPlan, *, flip: bool = False) -> PreparedImage:
    """Decoded upright pixels for a batch; they may be smaller than ``plan.size`` (a JPEG
    decoded at reduced scale): boxes are still reported in ``plan.size``'s pixels. RGBA
    pixels are split: the network sees the colours, the alpha is kept for the output."""
    alpha = None
    if pixels.ndim == 3 and pixels.shape[2] == 4:
        pixels, alpha = pixels[..., :3], np.ascontiguousarray(pixels[..., 3])
    tensor = torch.from_numpy(np.require(pixels, requirements=["C", "W"]))
    return PreparedImage(tensor, plan, flip, alpha)


def decode(
    source: Source, plan: InputPlan, *, full_size: bool = False, max_pixels: int | None = None
) -> PreparedImage:
    """Decode an encoded image as planned: a JPEG only as large as the network input needs
    unless ``full_size`` (to draw on it or hide its faces: then an image with transparency
    keeps its alpha too); safe to call from worker threads."""
    at_least = None if full_size else plan.resized
    pixels = open_image(source, max_pixels=max_pixels, at_least=at_least, keep_alpha=full_size)
    return prepare(pixels, plan)


def load(
    source: Source,
    policy: ScalePolicy,
    bucket_step: int,
    *,
    full_size: bool = False,
    max_pixels: int | None = None,
) -> PreparedImage:
    """Header, plan, decode: one encoded image (a file or bytes) ready for a batch."""
    plan = plan_input(read_header(source, max_pixels=max_pixels).size, policy, bucket_step)
    return decode(source, plan, full_size=full_size, max_pixels=max_pixels)


def network_batch(
    items: Sequence[PreparedImage], shape: Size, device: torch.device | str = "cpu"
) -> Tensor:
    """The ``(N, 3, H, W)`` float input of the network: each image resized to its plan
    (bilinear), mirrored if asked, mean subtracted, zero padded to ``shape``."""
    batch = torch.zeros((len(items), 3, *shape), device=device)
    mean = torch.tensor(MEAN_RGB, device=device).view(3, 1, 1)
    for row, item in enumerate(items):
        resized = item.plan.resized
        pixels = item.pixels.to(device).permute(2, 0, 1).float()
        if item.flip:
            pixels = pixels.flip(-1)
        if tuple(item.pixels.shape[:2]) != resized:
            pixels = F.interpolate(
                pixels[None], size=resized, mode="bilinear", align_corners=False
            )[0]
        batch[row, :, : resized[0], : resized[1]] = pixels - mean
    return batch
