"""JPEGs decoded on the GPU, a batch at a time (nvJPEG through torchvision).

On a GPU host the CPU's JPEG decoding, not the network, limits the images a
second. Here a batch of JPEGs crosses to the GPU as compressed bytes and is
decoded there; the EXIF orientation is applied there too, and
:func:`model.inputs.network_batch` resizes, subtracts the mean and pads on the
device the pixels are on, so nothing of a photo but its bytes and its boxes
crosses the bus. Needs torchvision (in the GPU image; it does not import beside
the CPU build of torch here); what nvJPEG cannot decode (not a JPEG, CMYK) is
left to the CPU input path (:mod:`model.inputs`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from model.images import ImageHeader
from model.inputs import InputPlan, PreparedImage

# EXIF orientation -> what makes stored (H, W, C) pixels upright: a transpose first (5 to 8),
# then quarter turns counter-clockwise, then a left-right mirror (as PIL's exif_transpose).
_UPRIGHT = {
    2: (False, 0, True),
    3: (False, 2, False),
    4: (False, 2, True),
    5: (True, 0, False),
    6: (False, 3, False),
    7: (True, 2, False),
    8: (False, 1, False),
}


def upright(pixels: Tensor, orientation: int) -> Tensor:
    """``(H, W, C)`` pixels as stored, turned as their EXIF orientation says."""
    transpose, turns, mirror = _UPRIGHT.get(orientation, (False, 0, False))
    if transpose:
        pixels = pixels.transpose(0, 1)
    if turns:
        pixels = torch.rot90(pixels, turns, dims=(0, 1))
    if mirror:
        pixels = pixels.flip(1)
    return pixels


def decodable(header: ImageHeader) -> bool:
    """Whether nvJPEG takes it: a JPEG in RGB or greyscale."""
    return header.format == "JPEG" and header.mode in ("RGB", "L")


def decode_jpegs(
    sources: Sequence[bytes],
    headers: Sequence[ImageHeader],
    plans: Sequence[InputPlan],
    device: torch.device,
) -> list[PreparedImage]:
    """Decode JPEGs (:func:`decodable`) on ``device`` in one batched call, upright and ready
    for :func:`~model.inputs.network_batch` there."""
    from torchvision.io import ImageReadMode, decode_jpeg

    data = [torch.frombuffer(bytearray(source), dtype=torch.uint8) for source in sources]
    decoded = decode_jpeg(data, mode=ImageReadMode.RGB, device=device)
    return [
        PreparedImage(upright(image.permute(1, 2, 0), header.orientation), plan)
        for image, header, plan in zip(decoded, headers, plans, strict=True)
    ]
