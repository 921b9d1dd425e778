import torch

from model.anchors import anchor_grid, decode, encode, feature_map_sizes


def test_map_sizes_follow_conv_arithmetic():
    assert feature_map_sizes(97, 131) == [(25, 33), (13, 17), (7, 9), (4, 5), (2, 3), (1, 2)]
    assert feature_map_sizes(640, 640)[0] == (160, 160)
    assert feature_map_sizes(640, 640)[-1] == (5, 5)


def test_anchor_grid_geometry():
    anchors = anchor_grid(64, 128)
    sizes = feature_map_sizes(64, 128)
    assert len(anchors) == sum(h * w for h, w in sizes)
    first = anchors[0]
    # Column 0, row 0 of the stride-4 map: centre (2, 2) px, size 16 px.
    assert torch.allclose(first, torch.tensor([2 / 128, 2 / 64, 16 / 128, 16 / 64]))
    second = anchors[1]
    assert torch.isclose(second[0], torch.tensor(6 / 128))
    last = anchors[-1]
    assert torch.allclose(last[2:], torch.tensor([512 / 128, 512 / 64]))


def test_encode_inverts_decode():
    # In float64 the round trip checks the algebra, not float32 exp/log accuracy.
    torch.manual_seed(0)
    anchors = anchor_grid(96, 160).double()
    offsets = torch.randn(len(anchors), 4, dtype=torch.float64)
    boxes = decode(offsets, anchors)
    assert torch.allclose(encode(boxes, anchors), offsets, rtol=0, atol=1e-9)


def test_zero_offsets_decode_to_the_anchor():
    anchors = anchor_grid(32, 32)
    boxes = decode(torch.zeros_like(anchors), anchors)
    assert torch.allclose((boxes[:, :2] + boxes[:, 2:]) / 2, anchors[:, :2])
    assert torch.allclose(boxes[:, 2:] - boxes[:, :2], anchors[:, 2:])
