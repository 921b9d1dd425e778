"""Anchor matching and the MultiBox loss on hand-built cases."""

import pytest
import torch

from model.anchors import decode
from model.train.loss import multibox_loss
from model.train.matching import Targets, match


def anchors_from_corners(corners: list[list[float]]) -> torch.Tensor:
    c = torch.tensor(corners)
    return torch.cat(((c[:, :2] + c[:, 2:]) / 2, c[:, 2:] - c[:, :2]), dim=1)


ANCHORS = anchors_from_corners(
    [
        [0.0, 0.0, 0.2, 0.2],  # 0: identical to face A
        [0.05, 0.0, 0.25, 0.2],  # 1: IoU 0.6 with A
        [0.6, 0.6, 0.7, 0.7],  # 2: best (but weak) anchor of the small face B
        [0.1, 0.1, 0.3, 0.3],  # 3: IoU ~0.14 with A
        [0.9, 0.0, 1.0, 0.1],  # 4: overlaps nothing
    ]
)
FACE_A = [0.0, 0.0, 0.2, 0.2]


def test_threshold_and_best_anchor_positives():
    # Face B is small: its best anchor has IoU < 0.35 and is matched anyway.
    face_b = [0.62, 0.62, 0.66, 0.66]
    targets = match([torch.tensor([FACE_A, face_b])], ANCHORS)
    assert targets.labels[0].tolist() == [1, 1, 1, 0, 0]
    # The encoded offsets decode back to each anchor's face.
    boxes = decode(targets.offsets[0], ANCHORS)
    torch.testing.assert_close(boxes[0], torch.tensor(FACE_A), atol=1e-5, rtol=0)
    torch.testing.assert_close(boxes[2], torch.tensor(face_b), atol=1e-5, rtol=0)
    assert targets.offsets[0, 3:].abs().sum() == 0


def test_scale_compensation_tops_up_faces_with_few_matches():
    anchors = anchors_from_corners(
        [
            [0.0, 0.0, 0.2, 0.2],
            [0.02, 0.0, 0.22, 0.2],
            [0.04, 0.0, 0.24, 0.2],
            [0.5, 0.5, 0.7, 0.7],
            [0.56, 0.5, 0.76, 0.7],  # IoU with face C in (0.1, 0.35)
            [0.58, 0.5, 0.78, 0.7],  # IoU with face C under 0.1
        ]
    )
    face_c = [0.45, 0.5, 0.6, 0.7]
    labels = match([torch.tensor([FACE_A, face_c])], anchors).labels[0].tolist()
    # A: 3 anchors >= 0.35; C: only anchor 3. The average is 2, so C gets one
    # more anchor from those with IoU in (0.1, 0.35): anchor 4.
    assert labels == [1, 1, 1, 1, 1, 0]


def test_images_without_faces_have_no_positives():
    targets = match([torch.zeros(0, 4), torch.tensor([FACE_A])], ANCHORS)
    assert targets.labels[0].sum() == 0
    assert targets.labels[1].sum() == 2


def test_hard_negatives_are_three_per_positive_and_normalised():
    labels = torch.tensor([[1, 0, 0, 0, 0, 0, 0, 0]])
    targets = Targets(labels, torch.zeros(1, 8, 4))
    # Background logits with increasing confidence in "face": the last anchors are hardest.
    face_logit = torch.linspace(-3, 3, 8)
    logits = torch.stack((torch.zeros(8), face_logit), dim=1)[None]
    offsets = torch.zeros(1, 8, 4)
    offsets[0, 0] = torch.tensor([1.0, 0.0, 0.0, 0.0])  # smooth-L1 of 1 -> 0.5
    parts = multibox_loss(offsets, logits, targets)
    ce = torch.nn.functional.cross_entropy(logits[0], labels[0], reduction="none")
    # Positive anchor 0 plus the three hardest negatives (anchors 5, 6, 7).
    expected = ce[0] + ce[5:].sum()
    assert parts.positives == 1
    torch.testing.assert_close(parts.classification, expected)
    torch.testing.assert_close(parts.box, torch.tensor(0.5))
    torch.testing.assert_close(parts.total, expected + 0.5)


def test_loss_is_divided_by_the_positive_count():
    labels = torch.tensor([[1, 1, 0, 0, 0, 0, 0, 0], [0, 0, 0, 0, 0, 0, 0, 0]])
    targets = Targets(labels, torch.zeros(2, 8, 4))
    offsets = torch.ones(2, 8, 4)
    logits = torch.zeros(2, 8, 2)
    parts = multibox_loss(offsets, logits, targets)
    # Two positives, each with 4 coordinates of smooth-L1(1) = 0.5; six negatives in image 0.
    torch.testing.assert_close(parts.box, torch.tensor(2 * 4 * 0.5 / 2))
    assert parts.classification.item() == pytest.approx(8 * torch.log(torch.tensor(2.0)).item() / 2)


def test_no_positives_anywhere_is_finite():
    targets = Targets(torch.zeros(2, 8, dtype=torch.long), torch.zeros(2, 8, 4))
    parts = multibox_loss(torch.randn(2, 8, 4), torch.randn(2, 8, 2), targets)
    assert parts.total.item() == 0.0
