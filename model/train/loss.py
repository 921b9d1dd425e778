"""MultiBox loss: smooth-L1 on positives plus cross-entropy with 3:1 hard negative mining."""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor

from model.train.matching import Targets

NEGATIVES_PER_POSITIVE = 3


@dataclass(frozen=True)
class LossParts:
    total: Tensor
    box: Tensor
    classification: Tensor
    positives: int


def multibox_loss(offsets: Tensor, logits: Tensor, targets: Targets) -> LossParts:
    """Both terms are summed and divided by the number of positive anchors in the batch.

    Per image, the negatives kept are the ``3 x positives`` background anchors
    with the highest classification loss (the rest are ignored).
    """
    positive = targets.labels > 0
    positives_per_image = positive.sum(dim=1)
    normaliser = positives_per_image.sum().clamp(min=1).float()

    box = F.smooth_l1_loss(offsets[positive].float(), targets.offsets[positive], reduction="sum")

    per_anchor = F.cross_entropy(logits.float().transpose(1, 2), targets.labels, reduction="none")
    mining = per_anchor.detach().masked_fill(positive, -1.0)
    rank = mining.argsort(dim=1, descending=True).argsort(dim=1)
    negatives = NEGATIVES_PER_POSITIVE * positives_per_image
    negatives = negatives.clamp(max=positive.shape[1] - 1)
    hard_negative = rank < negatives[:, None]
    classification = per_anchor[positive | hard_negative].sum()

    return LossParts(
        total=(box + classification) / normaliser,
        box=box / normaliser,
        classification=classification / normaliser,
        positives=int(positives_per_image.sum()),
    )
