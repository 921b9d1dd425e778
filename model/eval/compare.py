"""How closely one prediction set reproduces another, box by box.

The reduced-precision criterion: every reference face above a score is found
again at a high IoU. AP alone can hide faces that moved.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from model.boxes import box_iou
from model.conventions import prediction_to_corners


@dataclass(frozen=True)
class FacesFound:
    found: int
    total: int
    missed_iou: tuple[float, ...]  # best IoU of each face not found, lowest first

    @property
    def fraction(self) -> float:
        return self.found / self.total if self.total else 1.0


def faces_found(
    reference: dict[str, np.ndarray],
    candidate: dict[str, np.ndarray],
    *,
    min_score: float = 0.5,
    min_iou: float = 0.9,
) -> FacesFound:
    """How many reference faces scoring >= ``min_score`` the candidate has at IoU >= ``min_iou``.

    Both are prediction sets as ``predict_split`` returns them (``x y w h score`` rows).
    """
    found = total = 0
    missed: list[float] = []
    for key, faces in reference.items():
        strong = faces[faces[:, 4] >= min_score]
        if not len(strong):
            continue
        total += len(strong)
        others = candidate.get(key, np.zeros((0, 5)))
        if not len(others):
            missed += [0.0] * len(strong)
            continue
        iou = box_iou(
            torch.from_numpy(prediction_to_corners(strong)),
            torch.from_numpy(prediction_to_corners(others)),
            plus_one=True,
        )
        best = iou.max(dim=1).values
        found += int((best >= min_iou).sum())
        missed += best[best < min_iou].tolist()
    return FacesFound(found, total, tuple(sorted(missed)))
