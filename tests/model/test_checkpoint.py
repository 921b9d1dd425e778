import datetime
import json

import pytest
import torch

from model.checkpoint import (
    Checkpoint,
    CheckpointError,
    import_release,
    read_checkpoint,
    release_key_map,
    save_checkpoint,
)
from model.network import EXTD
from model.variants import ALL_VARIANTS, Variant


@pytest.mark.parametrize("width", [32, 48, 64])
def test_release_files_import_strictly(release_weights, width):
    checkpoint = read_checkpoint(release_weights[width])
    assert checkpoint.variant == Variant("fpn", width, "prelu")
    release = torch.load(release_weights[width], map_location="cpu", weights_only=True)
    assert len(checkpoint.state_dict) == len(release)
    # Every release tensor lands somewhere, unchanged; the stage norms' statistics serve
    # each of the six uses.
    imported = [
        t if t.dim() != 2 or "running" not in k else t[0] for k, t in checkpoint.state_dict.items()
    ]
    assert sorted(t.sum().item() for t in imported) == sorted(
        t.sum().item() for t in release.values()
    )
    stage_means = [
        t
        for k, t in checkpoint.state_dict.items()
        if k.startswith("stage.") and k.endswith("running_mean")
    ]
    assert all(t.shape[0] == 6 and torch.equal(t[0], t[5]) for t in stage_means)
    checkpoint.build()


@pytest.mark.parametrize("variant", ALL_VARIANTS, ids=str)
def test_key_map_covers_every_tensor_of_every_variant(variant):
    project_keys = set(EXTD(variant).state_dict())
    prefixes = set(release_key_map(variant).values())
    assert {k.rpartition(".")[0] for k in project_keys} <= prefixes


def test_import_refuses_missing_and_unexpected_keys(release_weights):
    release = torch.load(release_weights[64], map_location="cpu", weights_only=True)
    missing = dict(release)
    del missing["loc.3.bias"]
    with pytest.raises(CheckpointError, match="missing keys"):
        import_release(missing, Variant("fpn", 64, "prelu"), source="x")
    extra = dict(release) | {"base.9.conv.0.weight": torch.zeros(1)}
    with pytest.raises(CheckpointError, match=r"base\.9"):
        import_release(extra, Variant("fpn", 64, "prelu"), source="x")
    with pytest.raises(CheckpointError, match="wrong shapes"):
        import_release(release, Variant("fpn", 48, "prelu"), source="x")


def test_project_file_keeps_metadata_and_is_written_atomically(release_weights, tmp_path):
    checkpoint = read_checkpoint(release_weights[32])
    checkpoint.training = {"iterations": 10, "val_ap": {"hard": 0.5}}
    path = save_checkpoint(checkpoint, tmp_path / "sub" / "c.safetensors")
    assert [p.name for p in path.parent.iterdir()] == ["c.safetensors"]
    loaded = read_checkpoint(path)
    assert loaded.variant == checkpoint.variant
    assert loaded.training == {"iterations": 10, "val_ap": {"hard": 0.5}}
    assert loaded.sha256 == checkpoint.sha256
    assert loaded.source == "EXTD_32.pth"


def test_corrupt_project_file_is_refused(release_weights, tmp_path):
    path = save_checkpoint(read_checkpoint(release_weights[48]), tmp_path / "c.safetensors")
    data = bytearray(path.read_bytes())
    data[-100] ^= 0xFF  # flip bits inside the tensor data
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="hash mismatch"):
        read_checkpoint(path)
    path.write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match="safetensors"):
        read_checkpoint(path)


def test_safetensors_from_elsewhere_is_refused(tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "other.safetensors"
    save_file({"x": torch.zeros(2)}, path, metadata={"format": "pt"})
    with pytest.raises(CheckpointError, match="not an EXTD checkpoint"):
        read_checkpoint(path)


def test_pickle_that_is_not_a_state_dict_is_refused(tmp_path):
    path = tmp_path / "bad.pth"
    torch.save([1, 2, 3], path)
    with pytest.raises(CheckpointError, match="state_dict"):
        read_checkpoint(path)
    path.write_text("garbage")
    with pytest.raises(CheckpointError, match="not a readable"):
        read_checkpoint(path)


def test_pickle_with_arbitrary_objects_is_refused_without_unsafe_advice(tmp_path):
    path = tmp_path / "objects.pth"
    torch.save({"when": datetime.datetime(2019, 6, 15)}, path)
    with pytest.raises(CheckpointError, match="weights_only=True") as refused:
        read_checkpoint(path)
    assert "weights_only=False" not in str(refused.value)


def test_metadata_is_plain_json(release_weights, tmp_path):
    path = save_checkpoint(read_checkpoint(release_weights[64]), tmp_path / "c.safetensors")
    header = json.loads(path.read_bytes()[8 : 8 + int.from_bytes(path.read_bytes()[:8], "little")])
    meta = header["__metadata__"]
    assert meta["variant"] == "fpn-64-prelu"
    assert meta["format"] == "extd-checkpoint/1"
    assert len(meta["sha256"]) == 64


def test_from_network_copies_weights():
    network = EXTD(Variant("ssd", 32, "leaky"))
    checkpoint = Checkpoint.from_network(network)
    next(iter(network.parameters())).data.add_(1)
    assert not torch.equal(next(iter(checkpoint.state_dict.values())), network.stem.conv.weight)
