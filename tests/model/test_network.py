import pytest
import torch

from model.anchors import anchor_grid
from model.checkpoint import Checkpoint, read_checkpoint, save_checkpoint
from model.network import EXTD, count_parameters
from model.variants import ALL_VARIANTS, Variant


@pytest.mark.parametrize(
    ("name", "expected"),
    [("fpn-32-prelu", 62_939), ("fpn-48-prelu", 100_160), ("fpn-64-prelu", 162_352)],
)
def test_released_layouts_have_the_paper_parameter_counts(name, expected):
    assert count_parameters(EXTD(Variant.parse(name))) == expected


def test_one_stage_builds_all_six_maps():
    network = EXTD(Variant())
    calls = []
    network.stage.register_forward_hook(lambda module, inputs, output: calls.append(output.shape))
    with torch.no_grad():
        network(torch.zeros(1, 3, 256, 256))
    # The same module (one set of weights) ran once per detection map, halving each time.
    assert [shape[-1] for shape in calls] == [64, 32, 16, 8, 4, 2]


@pytest.mark.parametrize("variant", ALL_VARIANTS, ids=str)
def test_every_variant_runs_and_round_trips_through_a_checkpoint(variant, tmp_path):
    torch.manual_seed(0)
    network = EXTD(variant)
    # Non-trivial batch-norm statistics, so the round trip covers buffers too.
    for module in network.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.1, 0.1)
            module.running_var.uniform_(0.5, 1.5)
    network.eval()
    x = torch.randn(1, 3, 97, 131)
    with torch.no_grad():
        offsets, logits = network(x)
    anchors = anchor_grid(97, 131)
    assert offsets.shape == (1, len(anchors), 4)
    assert logits.shape == (1, len(anchors), 2)
    assert torch.isfinite(offsets).all()
    assert torch.isfinite(logits).all()

    path = save_checkpoint(
        Checkpoint.from_network(network, source="test"), tmp_path / "n.safetensors"
    )
    loaded = read_checkpoint(path)
    assert loaded.variant == variant
    with torch.no_grad():
        again = loaded.build()(x)
    assert torch.equal(again[0], offsets)
    assert torch.equal(again[1], logits)


def test_fpn_and_ssd_heads_differ_only_by_the_top_down_blocks():
    fpn, ssd = EXTD(Variant("fpn", 48, "prelu")), EXTD(Variant("ssd", 48, "prelu"))
    assert len(fpn.top_down) == 5
    assert len(ssd.top_down) == 0
    assert set(fpn.state_dict()) - set(ssd.state_dict()) == {
        k for k in fpn.state_dict() if k.startswith("top_down.")
    }


def test_each_use_of_the_stage_keeps_its_own_statistics():
    torch.manual_seed(0)
    network = EXTD(Variant("fpn", 32, "prelu")).train()
    with torch.no_grad():
        network(torch.randn(2, 3, 128, 128) * 50)
    norm = network.stage[0].expand.bn
    assert norm.running_mean.shape == (6, norm.num_features)
    # Every use was normalised by, and recorded, different batch statistics.
    assert len({tuple(row.tolist()) for row in norm.running_mean}) == 6
    # The blocks outside the stage run once and keep one set.
    assert network.entry.depthwise.bn.running_mean.shape == (64,)
    # In eval mode a use reads its own row: rows swapped, outputs change.
    network.eval()
    x = torch.randn(1, 3, 64, 64) * 50
    with torch.no_grad():
        before = network(x)[1]
        for module in network.stage.modules():
            if hasattr(module, "use"):
                module.running_mean[[0, 5]] = module.running_mean[[5, 0]]
        after = network(x)[1]
    assert not torch.allclose(before, after)
