"""WIDER FACE average precision, computed as the official evaluation tool does.

Scores are min-max normalised over the whole prediction set. Per image,
detections in descending score are matched to the ground-truth box of
highest IoU (+1 pixel convention); a match >= 0.5 to a box outside the
setting's list marks both ignored; recall counts listed boxes only. The
precision-recall curve is sampled at 1000 score thresholds and integrated
like VOC. The per-detection loop of the official code is vectorised: a
detection's effect depends only on its best box and whether that box was
already found, so cumulative counts reproduce it exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from model.boxes import box_iou
from model.conventions import gt_to_corners
from model.eval.predictions import image_key
from model.eval.split import SETTINGS, WiderSplit

IOU_THRESHOLD = 0.5
NUM_THRESHOLDS = 1000


@dataclass(frozen=True)
class Curve:
    precision: np.ndarray
    recall: np.ndarray


@dataclass(frozen=True)
class EvalResult:
    ap: dict[str, float]
    curves: dict[str, Curve]
    images: int

    def summary(self) -> dict[str, float | int]:
        return {**{s: round(self.ap[s], 4) for s in SETTINGS}, "images": self.images}

    def table_cells(self) -> str:
        """Easy, medium and hard AP as Markdown table cells, as the scripts' tables print them."""
        return " | ".join(f"{self.ap[s]:.4f}" for s in SETTINGS)


def normalise_scores(predictions: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Min-max normalise the score column over every prediction of every image."""
    scores = [p[:, 4] for p in predictions.values() if len(p)]
    if not scores:
        return predictions
    all_scores = np.concatenate(scores)
    low, span = all_scores.min(), all_scores.max() - all_scores.min()
    normalised = {}
    for key, faces in predictions.items():
        faces = faces.copy()
        faces[:, 4] = (faces[:, 4] - low) / span if span > 0 else 1.0
        normalised[key] = faces
    return normalised


def image_pr(
    faces: np.ndarray, gt: np.ndarray, listed: np.ndarray, thresholds: np.ndarray
) -> np.ndarray:
    """``(T, 2)`` (proposals kept, listed faces recalled) at each threshold for one image.

    ``faces`` are ``x y w h score`` with normalised scores, ``gt`` ``x y w h``,
    ``listed`` the 1-based indices of the boxes the setting scores.
    """
    faces = faces[np.argsort(-faces[:, 4], kind="stable")]
    # Detections and ground truth alike are read as the official tool reads boxes.
    corners = [torch.from_numpy(gt_to_corners(boxes)) for boxes in (faces, gt)]
    iou = box_iou(*corners, plus_one=True).numpy()
    best = iou.argmax(axis=1)
    matched = iou[np.arange(len(faces)), best] >= IOU_THRESHOLD
    is_listed = np.zeros(len(gt), dtype=bool)
    is_listed[listed - 1] = True
    ignored = matched & ~is_listed[best]
    # A listed box counts once, from the first detection that matches it.
    hits = matched & is_listed[best]
    first = np.zeros(len(faces), dtype=bool)
    hit_index = np.flatnonzero(hits)
    _, first_of_box = np.unique(best[hit_index], return_index=True)
    first[hit_index[first_of_box]] = True
    recalled = np.cumsum(first)
    proposals = np.cumsum(~ignored)
    # Detections are sorted by descending score: those >= t are a prefix.
    count = np.searchsorted(-faces[:, 4], -thresholds, side="right")
    last = np.maximum(count - 1, 0)
    return np.where(count[:, None] > 0, np.stack((proposals[last], recalled[last]), 1), 0)


def voc_ap(recall: np.ndarray, precision: np.ndarray) -> float:
    recall = np.concatenate(([0.0], recall, [1.0]))
    precision = np.concatenate(([0.0], precision, [0.0]))
    precision = np.maximum.accumulate(precision[::-1])[::-1]
    steps = np.flatnonzero(recall[1:] != recall[:-1])
    return float(np.sum((recall[steps + 1] - recall[steps]) * precision[steps + 1]))


def evaluate(predictions: dict[str, np.ndarray], split: WiderSplit) -> EvalResult:
    """AP per setting of ``{<event>/<stem>: (n, 5) x y w h score}`` on ``split``.

    Images of the split without predictions count as having none; predictions
    for other images are ignored.
    """
    wanted = {image_key(name) for name in split.images}
    scored = normalise_scores({k: v for k, v in predictions.items() if k in wanted})
    thresholds = 1 - (np.arange(NUM_THRESHOLDS) + 1) / NUM_THRESHOLDS
    ap, curves = {}, {}
    for setting in SETTINGS:
        totals = np.zeros((NUM_THRESHOLDS, 2))
        faces_listed = 0
        for name in split.images:
            listed = split.lists[setting][name]
            faces_listed += len(listed)
            faces, gt = scored.get(image_key(name), np.zeros((0, 5))), split.boxes[name]
            if len(faces) and len(gt):
                totals += image_pr(faces, gt, listed, thresholds)
        with np.errstate(divide="ignore", invalid="ignore"):
            precision = np.where(totals[:, 0] > 0, totals[:, 1] / totals[:, 0], 0.0)
        recall = totals[:, 1] / max(faces_listed, 1)
        curves[setting] = Curve(precision, recall)
        ap[setting] = voc_ap(recall, precision)
    return EvalResult(ap, curves, len(split.images))
