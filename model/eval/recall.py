"""Recall of ground-truth faces: how many a prediction set finds, overall and by face size."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise

import numpy as np
import torch

from model.boxes import box_iou
from model.conventions import gt_to_corners, prediction_to_corners
from model.eval.ap import IOU_THRESHOLD
from model.eval.predictions import image_key
from model.eval.split import WiderSplit, gt_face_sizes


@dataclass(frozen=True)
class Recall:
    found: int
    total: int

    @property
    def fraction(self) -> float:
        return self.found / self.total if self.total else float("nan")


def found_faces(
    predictions: dict[str, np.ndarray],
    split: WiderSplit,
    *,
    setting: str = "hard",
    min_score: float = 0.5,
) -> tuple[np.ndarray, np.ndarray]:
    """``(sizes, found)`` of every face of ``setting``'s lists: its size in the image's
    pixels, and whether a prediction scoring >= ``min_score`` covers it at IoU >= 0.5."""
    sizes, found = [], []
    for name in split.images:
        listed = split.lists[setting][name]
        if not len(listed):
            continue
        boxes = split.boxes[name][listed - 1]
        faces = predictions.get(image_key(name), np.zeros((0, 5)))
        faces = faces[faces[:, 4] >= min_score]
        sizes.append(gt_face_sizes(boxes))
        if not len(faces):
            found.append(np.zeros(len(boxes), bool))
            continue
        iou = box_iou(
            torch.from_numpy(gt_to_corners(boxes)),
            torch.from_numpy(prediction_to_corners(faces)),
            plus_one=True,
        )
        found.append((iou.max(dim=1).values >= IOU_THRESHOLD).numpy())
    if not sizes:
        return np.zeros(0), np.zeros(0, bool)
    return np.concatenate(sizes), np.concatenate(found)


def recall_by_size(sizes: np.ndarray, found: np.ndarray, edges: Sequence[float]) -> list[Recall]:
    """Recall within each ``[edges[i], edges[i + 1])`` size bin."""
    return [
        Recall(int(found[inside].sum()), int(inside.sum()))
        for low, high in pairwise(edges)
        for inside in [(sizes >= low) & (sizes < high)]
    ]
