"""From raw network outputs to per-image face lists, batched in torch."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from model.anchors import decode
from model.boxes import batched_nms, face_sizes
from model.options import PostprocessOptions

# The release keeps at most this many candidates per image before NMS.
PRE_NMS_TOP_K = 5000


def face_scores(logits: Tensor) -> Tensor:
    return torch.softmax(logits.float(), dim=-1)[..., 1]


def size_thresholds(sizes: Tensor, option: PostprocessOptions) -> Tensor:
    """The score each face of ``sizes`` (the longer side of its box, in network input pixels)
    must beat under ``option``: its ``small_face_threshold`` (if lower than its
    ``score_threshold``) up to ``small_face_size``, rising with the log of the size to
    ``score_threshold`` at 4 times that size."""
    if option.small_face_threshold is None:
        return torch.full_like(sizes, option.score_threshold)
    rise = (sizes.clamp(min=1e-6) / option.small_face_size).log().div(math.log(4)).clamp(0, 1)
    low, high = option.lowest_threshold, option.score_threshold
    return low + (high - low) * rise


def above_thresholds(faces: Tensor, option: PostprocessOptions, scale: float = 1.0) -> Tensor:
    """The ``x1 y1 x2 y2 score`` rows of ``faces`` that beat their size's threshold; ``scale``
    is network input pixels per pixel of the boxes (a bench cuts boxes found at a lower
    threshold this way, exactly as a run at ``option`` would)."""
    if option.small_face_threshold is None:
        return faces[faces[:, 4] > option.score_threshold]
    return faces[faces[:, 4] > size_thresholds(face_sizes(faces) * scale, option)]


def detect_faces(
    offsets: Tensor,
    logits: Tensor,
    anchors: Tensor,
    input_size: tuple[int, int],
    options: list[PostprocessOptions],
) -> list[Tensor]:
    """Decode, threshold and NMS a batch; returns ``(n, 5)`` ``x1 y1 x2 y2 score`` per image.

    With a ``small_face_threshold`` the candidates are cut at the lower of the two
    thresholds, and NMS's survivors at their size's (:func:`size_thresholds`).

    Boxes are in pixels of the network input (``input_size`` is ``(H, W)``),
    sorted by descending score, not clipped (the release never clips).
    """
    batch = offsets.shape[0]
    device = offsets.device
    scores = face_scores(logits)
    thresholds = torch.tensor([o.lowest_threshold for o in options], device=device)
    masked = torch.where(scores > thresholds[:, None], scores, torch.full_like(scores, -1.0))
    top_k = min(PRE_NMS_TOP_K, masked.shape[1])
    top_scores, top_index = masked.topk(top_k, dim=1, sorted=True)
    valid = top_scores > thresholds[:, None]
    k = int(valid.sum(dim=1).max()) if batch else 0
    top_scores, top_index, valid = top_scores[:, :k], top_index[:, :k], valid[:, :k]
    boxes = decode(
        offsets.float().gather(1, top_index[..., None].expand(-1, -1, 4)),
        anchors[top_index],
    )
    height, width = input_size
    boxes = boxes * torch.tensor([width, height, width, height], device=device, dtype=boxes.dtype)
    nms_iou = torch.tensor([o.nms_iou for o in options], device=device)
    keep = batched_nms(boxes, valid, nms_iou)
    faces = torch.cat((boxes, top_scores[..., None]), dim=-1)
    results = []
    for b, option in enumerate(options):
        kept = above_thresholds(faces[b][keep[b]], option)  # after NMS: a cut of its output
        results.append(kept[: option.max_faces] if option.max_faces else kept)
    return results
