"""EXTD's anchors (one square per location, 16 to 512 px) and the SSD box codec."""

from __future__ import annotations

from functools import lru_cache

import torch
from torch import Tensor

from model.conventions import ANCHOR_SIZES, NUM_SOURCES, SOURCE_STRIDES

VARIANCES = (0.1, 0.2)


def feature_map_sizes(height: int, width: int) -> list[tuple[int, int]]:
    """Spatial size of each detection map: every stride-2 conv gives ceil(n / 2)."""
    sizes = []
    h, w = -(-height // 4), -(-width // 4)
    for _ in range(NUM_SOURCES):
        sizes.append((h, w))
        h, w = -(-h // 2), -(-w // 2)
    return sizes


@lru_cache(maxsize=64)
def _anchor_grid(height: int, width: int, device: str) -> Tensor:
    grids = []
    for (rows, cols), stride, size in zip(
        feature_map_sizes(height, width), SOURCE_STRIDES, ANCHOR_SIZES, strict=True
    ):
        ys, xs = torch.meshgrid(
            torch.arange(rows, dtype=torch.float32),
            torch.arange(cols, dtype=torch.float32),
            indexing="ij",
        )
        cx = (xs.reshape(-1) + 0.5) * stride / width
        cy = (ys.reshape(-1) + 0.5) * stride / height
        grids.append(
            torch.stack(
                (
                    cx,
                    cy,
                    torch.full_like(cx, size / width),
                    torch.full_like(cy, size / height),
                ),
                dim=1,
            )
        )
    return torch.cat(grids).to(device)


def anchor_grid(height: int, width: int, device: torch.device | str = "cpu") -> Tensor:
    """``(A, 4)`` anchors ``(cx, cy, w, h)`` normalised by the input size, in network order."""
    return _anchor_grid(height, width, str(torch.device(device)))


def decode(offsets: Tensor, anchors: Tensor) -> Tensor:
    """SSD offsets -> normalised ``(x1, y1, x2, y2)`` boxes (any leading dims)."""
    centres = anchors[..., :2] + offsets[..., :2] * VARIANCES[0] * anchors[..., 2:]
    sizes = anchors[..., 2:] * torch.exp(offsets[..., 2:] * VARIANCES[1])
    corner = centres - sizes / 2
    return torch.cat((corner, corner + sizes), dim=-1)


def encode(boxes: Tensor, anchors: Tensor) -> Tensor:
    """Normalised ``(x1, y1, x2, y2)`` boxes -> the offsets that :func:`decode` inverts."""
    centres = (boxes[..., :2] + boxes[..., 2:]) / 2
    sizes = (boxes[..., 2:] - boxes[..., :2]).clamp(min=1e-6)
    return torch.cat(
        (
            (centres - anchors[..., :2]) / (VARIANCES[0] * anchors[..., 2:]),
            torch.log(sizes / anchors[..., 2:]) / VARIANCES[1],
        ),
        dim=-1,
    )
