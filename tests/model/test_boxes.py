import numpy as np
import pytest
import torch

from model.boxes import batched_nms, box_iou, box_voting
from model.paper_protocol import VOTE_IOU

VOTING = {"iou_threshold": VOTE_IOU, "max_boxes": 750}


def random_boxes(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    corner = torch.rand(n, 2, generator=generator) * 200
    size = 5 + torch.rand(n, 2, generator=generator) * 60
    scores = torch.rand(n, generator=generator)
    return torch.cat((corner, corner + size), dim=1), scores


def sequential_nms(boxes, scores, threshold):
    """The release's greedy loop, one box at a time."""
    order = scores.argsort(descending=True)
    keep, suppressed = [], torch.zeros(len(boxes), dtype=torch.bool)
    iou = box_iou(boxes, boxes)
    for i in order.tolist():
        if suppressed[i]:
            continue
        keep.append(i)
        suppressed |= iou[i] > threshold
    return keep


def sequential_vote(det, threshold=0.3):
    """S3FD's bbox_vote, in numpy, as published."""
    det = det[det[:, 4].argsort()[::-1]]
    out = []
    while det.shape[0] > 0:
        area = (det[:, 2] - det[:, 0] + 1) * (det[:, 3] - det[:, 1] + 1)
        xx1 = np.maximum(det[0, 0], det[:, 0])
        yy1 = np.maximum(det[0, 1], det[:, 1])
        xx2 = np.minimum(det[0, 2], det[:, 2])
        yy2 = np.minimum(det[0, 3], det[:, 3])
        inter = np.maximum(0.0, xx2 - xx1 + 1) * np.maximum(0.0, yy2 - yy1 + 1)
        o = inter / (area[0] + area[:] - inter)
        merge = np.where(o >= threshold)[0]
        accu = det[merge]
        det = np.delete(det, merge, 0)
        if merge.shape[0] <= 1:
            continue
        box = (accu[:, :4] * accu[:, 4:]).sum(0) / accu[:, 4].sum()
        out.append(np.append(box, accu[:, 4].max()))
    return np.array(out).reshape(-1, 5)


def test_iou_known_values():
    a = torch.tensor([[0.0, 0.0, 10.0, 10.0]])
    b = torch.tensor([[0.0, 0.0, 10.0, 10.0], [5.0, 0.0, 15.0, 10.0], [20.0, 20.0, 30.0, 30.0]])
    assert torch.allclose(box_iou(a, b), torch.tensor([[1.0, 1 / 3, 0.0]]))
    plus_one = box_iou(a, torch.tensor([[5.0, 0.0, 15.0, 10.0]]), plus_one=True)
    assert torch.isclose(plus_one, torch.tensor(66 / 176)).all()


def test_degenerate_boxes_have_zero_iou():
    a = torch.tensor([[5.0, 5.0, 5.0, 5.0]])
    assert box_iou(a, a).item() == 0.0


@pytest.mark.parametrize("seed", range(10))
def test_batched_nms_equals_the_sequential_loop(seed):
    sizes = [300, 1, 0, 120]
    batch = max(sizes)
    boxes = torch.zeros(len(sizes), batch, 4)
    valid = torch.zeros(len(sizes), batch, dtype=torch.bool)
    expected = []
    for b, n in enumerate(sizes):
        bx, sc = random_boxes(n, seed * 10 + b)
        order = sc.argsort(descending=True)
        boxes[b, :n], valid[b, :n] = bx[order], True
        expected.append(sorted(order.argsort()[sequential_nms(bx, sc, 0.3)].tolist()))
    keep = batched_nms(boxes, valid, torch.tensor([0.3, 0.3, 0.3, 0.3]))
    assert [torch.nonzero(k).flatten().tolist() for k in keep] == expected


def test_nms_without_candidates():
    keep = batched_nms(torch.zeros(3, 0, 4), torch.zeros(3, 0, dtype=torch.bool), 0.3)
    assert keep.shape == (3, 0)


def test_nms_thresholds_apply_per_image():
    boxes = torch.tensor([[[0.0, 0, 10, 10], [0, 0, 10, 12]]]).repeat(2, 1, 1)
    valid = torch.ones(2, 2, dtype=torch.bool)
    keep = batched_nms(boxes, valid, torch.tensor([0.5, 0.9]))
    assert keep.tolist() == [[True, False], [True, True]]


@pytest.mark.parametrize("seed", range(5))
def test_box_voting_equals_the_published_loop(seed):
    boxes, scores = random_boxes(400, seed)
    merged, merged_scores = box_voting(boxes.double(), scores.double(), **VOTING)
    expected = sequential_vote(torch.cat((boxes, scores[:, None]), 1).double().numpy())
    assert merged.shape[0] == expected.shape[0]
    assert np.allclose(merged.numpy(), expected[:, :4], atol=1e-6)
    assert np.allclose(merged_scores.numpy(), expected[:, 4])


def test_box_voting_drops_lonely_boxes_and_caps_the_count():
    boxes = torch.tensor([[0.0, 0, 10, 10], [1, 1, 11, 11], [100, 100, 110, 110]])
    merged, scores = box_voting(boxes, torch.tensor([0.9, 0.5, 0.8]), **VOTING)
    assert merged.shape == (1, 4)
    assert torch.allclose(merged, (boxes[0] * 0.9 + boxes[1] * 0.5) / 1.4)
    assert scores.tolist() == pytest.approx([0.9])
    empty_boxes, empty_scores = box_voting(torch.zeros(0, 4), torch.zeros(0), **VOTING)
    assert empty_boxes.shape == (0, 4)
    assert empty_scores.shape == (0,)


def test_box_voting_keeps_a_single_box_only_when_asked():
    boxes = torch.tensor([[0.0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60]])
    scores = torch.tensor([0.9, 0.8, 0.7])
    voted, _ = box_voting(boxes, scores, iou_threshold=0.3, max_boxes=10)
    assert len(voted) == 1  # the lone box is dropped, as S3FD does
    kept, kept_scores = box_voting(boxes, scores, iou_threshold=0.3, max_boxes=10, keep_single=True)
    assert len(kept) == 2
    torch.testing.assert_close(kept[1], boxes[2])
    assert kept_scores.tolist() == pytest.approx([0.9, 0.7])
