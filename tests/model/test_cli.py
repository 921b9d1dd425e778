"""``python -m model`` as a user runs it, in a subprocess."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from helpers import assert_same_faces
from PIL import Image


def run_cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "model", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **(env or {})},
        check=False,
    )


@pytest.mark.slow
def test_detect_json_matches_the_release(release_weights, reference, tmp_path):
    odd = sorted(p for p in reference[48] if p.suffix == ".png")
    relative = [os.path.relpath(p) for p in odd]
    result = run_cli(
        "detect", *relative, "--weights", str(release_weights[48]), "--scale", "1", "--json"
    )
    assert result.returncode == 0, result.stderr
    payload = json.loads(result.stdout)
    assert list(payload) == relative  # keys are the paths exactly as given
    for path, name in zip(odd, relative, strict=True):
        assert_same_faces(np.array(payload[name]), np.array(reference[48][path]))


@pytest.mark.slow
def test_detect_draws_boxes(release_weights, dev_images, tmp_path):
    out = tmp_path / "drawn"
    result = run_cli(
        "detect", str(dev_images[0]), "--weights", str(release_weights[32]), "--draw", str(out)
    )
    assert result.returncode == 0, result.stderr
    assert "faces with score >= 0.5" in result.stdout
    (drawn,) = out.iterdir()
    original = np.asarray(Image.open(dev_images[0]).convert("RGB"), dtype=np.int16)
    picture = np.asarray(Image.open(drawn).convert("RGB"), dtype=np.int16)
    assert picture.shape == original.shape
    # Box outlines are pure green where the photo was not.
    green = (picture[..., 1] > 200) & (picture[..., 0] < 60) & (picture[..., 2] < 120)
    assert green.sum() > 10 * (np.abs(original - picture).sum(axis=2) > 0).mean()
    assert green.sum() > 1000


def test_info_reports_variant_and_parameters(release_weights):
    result = run_cli("info", str(release_weights[64]), "--json")
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    assert info["variant"] == "fpn-64-prelu"
    assert info["parameters"] == 162_352
    assert info["source"] == "EXTD_64.pth"


def test_weights_pull_from_a_folder_mirror(weights_mirror, tmp_path):
    env = {"EXTD_WEIGHTS_DIR": str(tmp_path), "EXTD_WEIGHTS_MIRROR": str(weights_mirror)}
    result = run_cli("weights", "pull", "extd-32", env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(tmp_path / "extd-32.safetensors")
    info = run_cli("info", "extd-32", "--json", env=env)
    assert json.loads(info.stdout)["parameters"] == 62_939


def test_bad_image_is_a_clear_error(release_weights, tmp_path):
    bad = tmp_path / "broken.jpg"
    bad.write_text("this is text")
    result = run_cli("detect", str(bad), "--weights", str(release_weights[32]))
    assert result.returncode == 2
    assert "not an image" in result.stderr
    assert "Traceback" not in result.stderr


def test_unknown_weights_is_a_clear_error():
    result = run_cli("info", "no-such-model")
    assert result.returncode == 2
    assert "neither a checkpoint file nor a known name" in result.stderr
