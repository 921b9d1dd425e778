"""The training loop: resumption, torch.distributed, learning from scratch, fine-tuning."""

import json
import os
import subprocess
import sys

import pytest
import torch
from helpers import FAST_FP32

from model.checkpoint import Checkpoint, read_checkpoint
from model.detector import Detector
from model.eval import evaluate, load_split, predict_split
from model.eval.split import parse_ground_truth
from model.network import EXTD
from model.train import TrainConfig, Trainer
from model.train.trainer import initialise
from model.variants import Variant


@pytest.fixture(autouse=True)
def denormals_back_on():
    """Training flushes denormal floats to zero, process-wide (a run has a process of its
    own); these tests train in the test process, so they give the setting back."""
    yield
    torch.set_flush_denormal(False)


def tiny_config(dev_split, out, **changes) -> TrainConfig:
    settings = {
        "data_root": str(dev_split),
        "out": str(out),
        "variant": "fpn-32-prelu",
        "limit_images": 4,
        "batch_size": 2,
        "input_size": 128,
        "iterations": 6,
        "lr_steps": [4],
        "workers": 0,
        "checkpoint_every": 3,
        "log_every": 1,
    }
    return TrainConfig(**(settings | changes))


@pytest.mark.slow
def test_resume_ends_in_the_same_state(dev_split, tmp_path):
    straight = Trainer(tiny_config(dev_split, tmp_path / "a"))
    straight.train()
    Trainer(tiny_config(dev_split, tmp_path / "b", iterations=3)).train()
    resumed = Trainer(
        tiny_config(dev_split, tmp_path / "b"), resume=tmp_path / "b" / "state-it3.pt"
    )
    assert resumed.iteration == 3
    final = resumed.train()
    assert final.name == "fpn-32-prelu-it6.safetensors"
    a = torch.load(tmp_path / "a" / "state-it6.pt", weights_only=True)
    b = torch.load(tmp_path / "b" / "state-it6.pt", weights_only=True)
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    momentum_a = [s["momentum_buffer"] for s in a["optimizer"]["state"].values()]
    momentum_b = [s["momentum_buffer"] for s in b["optimizer"]["state"].values()]
    assert all(torch.equal(x, y) for x, y in zip(momentum_a, momentum_b, strict=True))
    checkpoint = read_checkpoint(final)
    assert checkpoint.training["iteration"] == 6
    assert checkpoint.training["config"]["variant"] == "fpn-32-prelu"


def test_resume_refuses_a_different_recipe(dev_split, tmp_path):
    Trainer(tiny_config(dev_split, tmp_path, iterations=3)).train()
    with pytest.raises(ValueError, match="batch_size"):
        Trainer(tiny_config(dev_split, tmp_path, batch_size=4), resume=tmp_path / "state-it3.pt")


def test_checkpoints_are_atomic_and_loadable(dev_split, tmp_path):
    Trainer(tiny_config(dev_split, tmp_path, iterations=3)).train()
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "fpn-32-prelu-it3.safetensors",
        "log.jsonl",
        "state-it3.pt",
    ]
    Detector(tmp_path / "fpn-32-prelu-it3.safetensors", backend="torch")


@pytest.mark.slow
def test_two_processes_with_gloo_stay_in_sync_and_only_rank_0_writes(dev_split, tmp_path):
    launcher = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node",
        "2",
    ]
    options = {
        "--data-root": dev_split,
        "--out": tmp_path,
        "--variant": "fpn-32-prelu",
        "--limit-images": 8,
        "--batch-size": 4,
        "--input-size": 128,
        "--iterations": 4,
        "--workers": 0,
        "--device": "cpu",
        "--checkpoint-every": 2,
    }
    command = [*launcher, "-m", "model", "train", "--check-sync"]
    command += [str(part) for pair in options.items() for part in pair]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=600, env=env, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    # Only rank 0 prints the final path.
    assert done.stdout.strip().splitlines()[-1].endswith("fpn-32-prelu-it4.safetensors")
    assert done.stdout.count("fpn-32-prelu-it4.safetensors") == 1
    lines = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert [line["iteration"] for line in lines] == [1, 2, 3, 4]
    assert all(line["in_sync"] and line["rank"] == 0 and line["world"] == 2 for line in lines)
    training = read_checkpoint(tmp_path / "fpn-32-prelu-it4.safetensors").training
    assert training["written_by_rank"] == 0
    assert training["world_size"] == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "fpn-32-prelu-it2.safetensors",
        "fpn-32-prelu-it4.safetensors",
        "log.jsonl",
        "state-it2.pt",
        "state-it4.pt",
    ]


def dev_ap(weights, split) -> dict[str, float]:
    detector = Detector(weights, backend=FAST_FP32)
    return evaluate(predict_split(detector, split, progress=False), split).ap


@pytest.mark.slow
def test_fine_tuning_the_release_keeps_its_accuracy(release_weights, dev_split, tmp_path):
    config = TrainConfig(
        data_root=str(dev_split),
        out=str(tmp_path),
        variant="fpn-64-prelu",
        init=str(release_weights[64]),
        limit_images=64,
        batch_size=4,
        input_size=320,
        iterations=30,
        lr=1e-4,
        workers=1,
        checkpoint_every=1000,
        log_every=10,
    )
    final = Trainer(config).train()
    split = load_split(dev_split).subset(24)
    before, after = dev_ap(release_weights[64], split), dev_ap(final, split)
    for setting in before:
        assert abs(after[setting] - before[setting]) <= 0.01, (before, after)
    assert read_checkpoint(final).training["config"]["init"] == str(release_weights[64])


def big_face_split(dev_split, folder, count: int = 8):
    """A split folder of ``count`` dev images whose 1 to 6 faces are all large and easy."""
    gt = parse_ground_truth((dev_split / "wider_face_val_bbx_gt.txt").read_text())
    difficulty = json.loads((dev_split / "difficulty.json").read_text())
    chosen = [
        name
        for name, boxes in gt.items()
        if 1 <= len(boxes) <= 6
        and (boxes[:, 2] * boxes[:, 3]).min() > 50**2
        and len(difficulty[name]["easy"]) == len(boxes)
    ][::50][:count]
    lines = []
    for name in chosen:
        boxes = gt[name]
        lines += [name, str(len(boxes))] + [
            " ".join(f"{v:g}" for v in box) + " 0 0 0 0 0 0" for box in boxes
        ]
        (folder / "images" / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / "images" / name).symlink_to(dev_split / "images" / name)
    (folder / "wider_face_val_bbx_gt.txt").write_text("\n".join(lines) + "\n")
    (folder / "difficulty.json").write_text(json.dumps({n: difficulty[n] for n in chosen}))
    return folder


@pytest.mark.slow
def test_learns_from_scratch(dev_split, tmp_path):
    """A few hundred CPU iterations on 8 images: the loss falls and the AP rises."""
    data = big_face_split(dev_split, tmp_path / "data")
    split = load_split(data)
    torch.manual_seed(0)
    untrained = EXTD(Variant.parse("fpn-32-prelu"))
    initialise(untrained)
    config = TrainConfig(
        data_root=str(data),
        out=str(tmp_path / "run"),
        variant="fpn-32-prelu",
        batch_size=8,
        input_size=128,
        iterations=250,
        lr=0.04,
        clip_grad_norm=5.0,
        workers=1,
        log_every=25,
        checkpoint_every=1000,
    )
    final = Trainer(config).train()
    losses = [
        json.loads(line)["loss"]
        for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()
    ]
    assert sum(losses[-2:]) < 0.8 * sum(losses[:2]), losses

    def hard_ap(weights) -> float:
        # At the training scale: the faces are about the size the crops taught.
        predictions = predict_split(
            Detector(weights, backend="torch"), split, max_side=128, progress=False
        )
        return evaluate(predictions, split).ap["hard"]

    before, after = hard_ap(Checkpoint.from_network(untrained)), hard_ap(final)
    assert after > max(3 * before, 0.01), (before, after)
