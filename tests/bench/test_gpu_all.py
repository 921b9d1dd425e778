"""The GPU script's dry run on the CPU: every section runs and lands in its JSON, so the one
call a lent GPU gets is not spent finding a typo."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tools.data import REPO

pytestmark = pytest.mark.slow


def test_the_dry_run_writes_every_section(tmp_path, dev_split, release_weights):
    command = [
        sys.executable, "bench/gpu_all.py", "--device", "cpu", "--size", "64",
        "--batches", "1", "2", "--seconds", "0.2", "--jpegs", "2", "--jpeg-batch", "2",
        "--http-workers", "2", "--clients", "2", "--http-seconds", "4", "--ap-images", "2",
        "--weights", str(release_weights[64]), "--split", str(dev_split),
        "--out", str(tmp_path),
    ]  # fmt: skip
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=1200)
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads((tmp_path / "gpu_all.json").read_text())
    assert set(results) == {"machine", "forward", "jpeg_to_boxes", "http", "accuracy"}
    assert [row["batch"] for row in results["forward"]["rows"]] == [1, 2]
    assert results["forward"]["first_calls"]["torch-compiled"]["largest_logit_difference"] < 1e-3
    assert results["http"]["5xx"] == 0
    fp32 = results["accuracy"]["torch"]["hard"]
    assert abs(results["accuracy"]["torch-compiled"]["hard"] - fp32) < 1e-3
