"""The paper's WIDER test protocol: several scales plus a flip, merged by box voting.

It follows the release's ``wider_test.py``: detect at ``s0 = min(m, 1)``
(``m`` bounds the area to 1700x1200) and on the mirrored image; at a shrunk
scale keeping only large boxes; at enlarged scales keeping only small boxes
(or large ones when nothing is enlarged); then vote.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torch import Tensor

from model.boxes import box_voting
from model.conventions import PAPER_MAX_AREA

# S3FD's ``bbox_vote`` merges boxes overlapping the leader at IoU >= 0.3.
VOTE_IOU = 0.3

Keep = Literal["all", "large", "small"]


@dataclass(frozen=True)
class Pass:
    scale: float
    flip: bool = False
    keep: Keep = "all"


def paper_passes(height: int, width: int) -> list[Pass]:
    """The detection passes of the protocol for one ``height x width`` image."""
    m = math.sqrt(PAPER_MAX_AREA / (height * width))
    s0 = min(m, 1.0)
    passes = [Pass(s0), Pass(s0, flip=True)]
    shrink = 0.5 if m >= 0.75 else 0.5 * m
    passes.append(Pass(shrink, keep="large"))
    enlarge = min(2.0, m) if m > 1 else (shrink + m) / 2
    enlarged = [enlarge]
    if m > 2:
        enlarge *= 2
        while enlarge < m:
            enlarged.append(enlarge)
            enlarge *= 2
        enlarged.append(m)
    keep: Keep = "small" if m > 1 else "large"
    passes.extend(Pass(scale, keep=keep) for scale in enlarged)
    return passes


def keep_mask(faces: Tensor, keep: Keep) -> Tensor:
    """Size filter of a pass (+1 pixel convention, as the release)."""
    width = faces[:, 2] - faces[:, 0] + 1
    height = faces[:, 3] - faces[:, 1] + 1
    if keep == "large":
        return torch.maximum(width, height) > 30
    if keep == "small":
        return torch.minimum(width, height) < 100
    return torch.ones_like(width, dtype=torch.bool)


def merge_passes(
    faces_per_pass: list[Tensor], passes: list[Pass], max_faces: int, *, keep_single: bool = False
) -> Tensor:
    """Filter each pass, then box-vote everything into one ``(n, 5)`` face list; a face only
    one pass found is dropped (the release's rule, what the AP is computed with) unless
    ``keep_single`` (to hide faces: a face one pass found is still a face to hide)."""
    kept = [
        faces[keep_mask(faces, p.keep)] for faces, p in zip(faces_per_pass, passes, strict=True)
    ]
    faces = torch.cat(kept)
    boxes, scores = box_voting(
        faces[:, :4],
        faces[:, 4],
        iou_threshold=VOTE_IOU,
        max_boxes=max_faces or len(faces),
        keep_single=keep_single,
    )
    return torch.cat((boxes, scores[:, None]), dim=1)


def merge_found(
    found: list[np.ndarray], passes: list[Pass], max_faces: int, *, keep_single: bool = False
) -> np.ndarray:
    """:func:`merge_passes` over the ``(n, 5)`` arrays the passes found (``Detector.run``)."""
    per_pass = [torch.from_numpy(f) for f in found]
    return merge_passes(per_pass, passes, max_faces, keep_single=keep_single).numpy()
