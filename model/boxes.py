"""Vectorised box operations: IoU, batched greedy NMS and box voting.

Greedy NMS is sequential by definition, but its result is the unique fixed
point of ``keep[i] = not any(keep[j] and overlap(j, i) for j < i)``. The
overlapping pairs are found tile by tile (a sparse edge list: most pairs do
not overlap), then that rule is iterated over the edges until nothing
changes, which takes as many steps as the longest suppression chain (a
handful in practice). No per-box Python loop.
"""

from __future__ import annotations

import torch
from torch import Tensor

# Pairs compared at once when building the overlap graph (tiles stay in cache).
_TILE_PAIRS = 1 << 20


def _areas(boxes: Tensor, extra: float) -> Tensor:
    return (boxes[..., 2] - boxes[..., 0] + extra) * (boxes[..., 3] - boxes[..., 1] + extra)


def face_sizes(boxes: Tensor) -> Tensor:
    """The size of each ``x1 y1 x2 y2 ...`` face: the longer side of its box."""
    return torch.maximum(boxes[..., 2] - boxes[..., 0], boxes[..., 3] - boxes[..., 1])


def box_iou(a: Tensor, b: Tensor, *, plus_one: bool = False) -> Tensor:
    """IoU of ``(..., N, 4)`` against ``(..., M, 4)`` corner boxes -> ``(..., N, M)``.

    ``plus_one`` uses the old pixel convention (a box from x1 to x2 is
    ``x2 - x1 + 1`` wide) of the WIDER evaluation and box-voting code.
    """
    extra = 1.0 if plus_one else 0.0
    x1 = torch.maximum(a[..., :, None, 0], b[..., None, :, 0])
    width = torch.minimum(a[..., :, None, 2], b[..., None, :, 2]).sub_(x1).add_(extra).clamp_(min=0)
    y1 = torch.maximum(a[..., :, None, 1], b[..., None, :, 1], out=x1)
    height = (
        torch.minimum(a[..., :, None, 3], b[..., None, :, 3]).sub_(y1).add_(extra).clamp_(min=0)
    )
    inter = width.mul_(height)
    union = torch.add(_areas(a, extra)[..., :, None], _areas(b, extra)[..., None, :]).sub_(inter)
    return inter.div_(union.clamp_(min=torch.finfo(union.dtype).tiny))


def _overlap_edges(
    boxes: Tensor, valid: Tensor, threshold: Tensor, *, inclusive: bool, plus_one: bool
) -> tuple[Tensor, Tensor]:
    """Flat indices ``(j, i)``, ``j < i`` in one image, of pairs whose IoU passes the threshold."""
    batch, k = valid.shape
    rows = max(1, _TILE_PAIRS // max(1, batch * k))
    index = torch.arange(k, device=boxes.device)
    sources = [torch.zeros(0, dtype=torch.long, device=boxes.device)]
    targets = [sources[0]]
    for start in range(0, k, rows):
        stop = min(start + rows, k)
        iou = box_iou(boxes[:, start:stop], boxes[:, start:], plus_one=plus_one)
        limit = threshold[:, None, None]
        passes = iou >= limit if inclusive else iou > limit
        passes &= index[None, None, start:] > index[None, start:stop, None]
        passes &= valid[:, start:stop, None] & valid[:, None, start:]
        image, row, col = passes.nonzero(as_tuple=True)
        sources.append(image * k + row + start)
        targets.append(image * k + col + start)
    return torch.cat(sources), torch.cat(targets)


def _greedy_keep(sources: Tensor, targets: Tensor, valid: Tensor) -> Tensor:
    """Fixed point of greedy suppression over the overlap graph (flat indices)."""
    keep = valid.clone()
    for _ in range(valid.numel() + 1):
        dropped = torch.zeros_like(valid)
        dropped[targets[keep[sources]]] = True
        updated = valid & ~dropped
        if torch.equal(updated, keep):
            break
        keep = updated
    return keep


def batched_nms(boxes: Tensor, valid: Tensor, iou_threshold: Tensor | float) -> Tensor:
    """Greedy NMS for a batch of score-sorted candidate lists.

    ``boxes`` is ``(B, K, 4)`` with each row sorted by descending score,
    ``valid`` ``(B, K)`` marks real candidates, ``iou_threshold`` is a float or
    a ``(B,)`` tensor. A box is dropped when its IoU with a kept, higher-scoring
    box is above the threshold. Returns the ``(B, K)`` keep mask.
    """
    threshold = torch.as_tensor(iou_threshold, dtype=boxes.dtype, device=boxes.device)
    threshold = threshold.expand(valid.shape[0])
    sources, targets = _overlap_edges(boxes, valid, threshold, inclusive=False, plus_one=False)
    return _greedy_keep(sources, targets, valid.reshape(-1)).view_as(valid)


def box_voting(
    boxes: Tensor,
    scores: Tensor,
    *,
    iou_threshold: float,
    max_boxes: int,
    keep_single: bool = False,
) -> tuple[Tensor, Tensor]:
    """Merge overlapping detections into their score-weighted mean (S3FD's ``bbox_vote``).

    Boxes are visited by descending score; the top box and every remaining
    box with IoU >= ``iou_threshold`` (+1 pixel convention) form a cluster,
    replaced by the score-weighted mean box with the cluster's top score.
    Clusters of one box are dropped (S3FD's rule), unless ``keep_single``. Returns at most
    ``max_boxes`` boxes and
    scores in descending order of score.
    """
    n = boxes.shape[0]
    if n == 0:
        return boxes, scores
    order = scores.argsort(descending=True, stable=True)
    boxes, scores = boxes[order], scores[order]
    valid = torch.ones(n, dtype=torch.bool, device=boxes.device)
    threshold = torch.full((1,), iou_threshold, dtype=boxes.dtype, device=boxes.device)
    sources, targets = _overlap_edges(
        boxes[None], valid[None], threshold, inclusive=True, plus_one=True
    )
    leaders = _greedy_keep(sources, targets, valid)
    # A box joins the first leader, in score order, that overlaps it.
    joins = leaders[sources]
    cluster = torch.arange(n, device=boxes.device).scatter_reduce(
        0, targets[joins], sources[joins], reduce="amin", include_self=True
    )
    count = torch.zeros_like(scores).index_add_(0, cluster, torch.ones_like(scores))
    weight_sum = torch.zeros_like(scores).index_add_(0, cluster, scores)
    box_sum = torch.zeros_like(boxes).index_add_(0, cluster, boxes * scores[:, None])
    merged = leaders & (count > (0 if keep_single else 1))
    mean_boxes = box_sum[merged] / weight_sum[merged, None]
    return mean_boxes[:max_boxes], scores[merged][:max_boxes]
