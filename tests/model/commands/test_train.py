"""``python -m model train`` for a few steps, as a user runs it: from scratch, and fine-tuning
a registry name pulled from the mirror."""

import json

import pytest

from model.checkpoint import read_checkpoint

TINY = ("--iterations", "2", "--batch-size", "2", "--input-size", "128", "--limit-images", "4",
        "--workers", "0", "--checkpoint-every", "2", "--log-every", "1")  # fmt: skip


@pytest.mark.slow
def test_a_user_fine_tunes_a_registry_model_and_publishes_it(user, dev_split):
    done = user.run(
        "train", "--data-root", dev_split, "--init", "extd-32", "--variant", "fpn-32-prelu",
        "--lr", "1e-4", "--out", "runs/ft", "--publish", "published/mine.safetensors", *TINY,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    final = user.folder / done.stdout.strip().splitlines()[-1]
    assert final == user.folder / "runs" / "ft" / "fpn-32-prelu-it2.safetensors"
    published = read_checkpoint(user.folder / "published" / "mine.safetensors")
    assert published.sha256 == read_checkpoint(final).sha256
    assert published.training["iteration"] == 2
    assert (user.cache / "weights" / "extd-32.safetensors").is_file()  # --init pulled it
    log = [
        json.loads(line) for line in (user.folder / "runs/ft/log.jsonl").read_text().splitlines()
    ]
    assert [entry["iteration"] for entry in log if "loss" in entry] == [1, 2]
    described = user.run("info", final, "--json")
    assert json.loads(described.stdout)["variant"] == "fpn-32-prelu"


@pytest.mark.slow
def test_a_split_without_images_is_a_clear_error(user, tmp_path):
    done = user.run("train", "--data-root", tmp_path, "--out", "runs/x", *TINY)
    assert done.returncode == 2
    assert str(tmp_path) in done.stderr
    assert "Traceback" not in done.stderr
