"""S3FD's scale-compensation anchor matching, vectorised over a batch.

Stage 1: anchors with IoU >= 0.35 to a face are positive (for the face they
overlap most), and every face also gets its single best anchor. Stage 2:
faces with fewer matches than the image's average get extra anchors with
IoU in (0.1, 0.35), highest IoU first, up to that average.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from model.anchors import encode
from model.boxes import box_iou

POSITIVE_IOU = 0.35
CANDIDATE_IOU = 0.1


@dataclass(frozen=True)
class Targets:
    labels: Tensor  # (B, A) 1 = face, 0 = background
    offsets: Tensor  # (B, A, 4) encoded boxes of the matched faces (zeros elsewhere)


def _anchor_corners(anchors: Tensor) -> Tensor:
    return torch.cat((anchors[:, :2] - anchors[:, 2:] / 2, anchors[:, :2] + anchors[:, 2:] / 2), 1)


def match(faces: list[Tensor], anchors: Tensor) -> Targets:
    """Targets for normalised ``x1 y1 x2 y2`` faces per image against ``(A, 4)`` anchors."""
    batch, device = len(faces), anchors.device
    count = max((len(f) for f in faces), default=0)
    padded = torch.zeros(batch, max(count, 1), 4, device=device)
    real = torch.zeros(batch, max(count, 1), dtype=torch.bool, device=device)
    for b, boxes in enumerate(faces):
        padded[b, : len(boxes)] = boxes.to(device)
        real[b, : len(boxes)] = True
    iou = box_iou(padded, _anchor_corners(anchors)[None].expand(batch, -1, -1))  # (B, G, A)
    iou = iou.masked_fill(~real[..., None], -1.0)

    best_face_iou, assigned = iou.max(dim=1)  # per anchor
    positive = best_face_iou >= POSITIVE_IOU
    # Every real face keeps its best anchor, whatever its IoU.
    best_anchor = iou.argmax(dim=2)  # (B, G)
    rows = torch.arange(batch, device=device)[:, None].expand_as(best_anchor)
    face_index = torch.arange(best_anchor.shape[1], device=device).expand_as(best_anchor)
    assigned[rows[real], best_anchor[real]] = face_index[real]
    positive[rows[real], best_anchor[real]] = True

    # Stage 2: top up faces below the image's average number of matches.
    matched = torch.zeros_like(real, dtype=torch.long)
    matched.scatter_add_(1, torch.where(positive, assigned, 0), positive.long())
    faces_per_image = real.sum(dim=1).clamp(min=1)
    average = (matched * real).sum(dim=1) // faces_per_image  # (B,)
    deficit = ((average[:, None] - matched).clamp(min=0) * real).long()  # (B, G)
    most = int(deficit.max()) if deficit.numel() else 0
    if most > 0:
        eligible = (iou > CANDIDATE_IOU) & (iou < POSITIVE_IOU) & ~positive[:, None, :]
        ranked_iou, ranked_anchor = iou.masked_fill(~eligible, -1.0).topk(
            min(most, iou.shape[2]), dim=2
        )
        rank = torch.arange(ranked_iou.shape[2], device=device)
        take = (rank[None, None, :] < deficit[..., None]) & (ranked_iou > 0)
        b_index, g_index, k_index = take.nonzero(as_tuple=True)
        extra_anchor = ranked_anchor[b_index, g_index, k_index]
        assigned[b_index, extra_anchor] = g_index
        positive[b_index, extra_anchor] = True

    matched_boxes = padded.gather(1, assigned[..., None].expand(-1, -1, 4))  # (B, A, 4)
    offsets = encode(matched_boxes, anchors[None].expand(batch, -1, -1))
    offsets = torch.where(positive[..., None], offsets, torch.zeros_like(offsets))
    return Targets(positive.long(), offsets)
