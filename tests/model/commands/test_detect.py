"""``python -m model detect``: the release's boxes on request, people's defaults otherwise."""

import json
import os
import shutil

import numpy as np
import pytest
from cli import run_cli
from helpers import assert_same_faces
from PIL import Image

from model.commands.detect import expand

PARITY = ("--backend", "torch", "--scale", "1", "--score-threshold", "0.05")


@pytest.mark.slow
def test_detect_json_matches_the_release(release_weights, reference):
    odd = sorted(p for p in reference[48] if p.suffix == ".png")
    relative = [os.path.relpath(p) for p in odd]
    result = run_cli("detect", *relative, "--weights", str(release_weights[48]), *PARITY, "--json")
    assert result.returncode == 0, result.stderr
    payload = json.loads(result.stdout)
    assert list(payload) == relative  # keys are the paths exactly as given
    for path, name in zip(odd, relative, strict=True):
        assert_same_faces(np.array(payload[name]), np.array(reference[48][path]))


@pytest.mark.slow
def test_defaults_list_confident_faces_and_draw_them(release_weights, dev_images, tmp_path):
    out = tmp_path / "drawn"
    result = run_cli(
        "detect", str(dev_images[0]), "--weights", str(release_weights[32]), "--draw", str(out)
    )
    assert result.returncode == 0, result.stderr
    header, *rows = result.stdout.strip().splitlines()
    assert "faces scoring above 0.5" in header
    scores = [float(row.split()[-1]) for row in rows]
    assert len(scores) >= 9
    assert min(scores) > 0.5
    (drawn,) = out.iterdir()
    original = np.asarray(Image.open(dev_images[0]).convert("RGB"), dtype=np.int16)
    picture = np.asarray(Image.open(drawn).convert("RGB"), dtype=np.int16)
    assert picture.shape == original.shape
    # Box outlines are pure green where the photo was not.
    green = (picture[..., 1] > 200) & (picture[..., 0] < 60) & (picture[..., 2] < 120)
    assert green.sum() > 10 * (np.abs(original - picture).sum(axis=2) > 0).mean()
    assert green.sum() > 1000


def test_folders_and_globs_expand_to_their_images(tmp_path):
    for name in ("b.jpg", "a.PNG", "sub/c.jpeg", "notes.txt"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    assert expand([str(tmp_path)]) == [str(tmp_path / p) for p in ("a.PNG", "b.jpg", "sub/c.jpeg")]
    assert expand([str(tmp_path / "*.jpg")]) == [str(tmp_path / "b.jpg")]
    assert expand([str(tmp_path / "missing.jpg")]) == [str(tmp_path / "missing.jpg")]
    with pytest.raises(ValueError, match="no file matches"):
        expand([str(tmp_path / "*.gif")])


def test_bad_image_is_a_clear_error(release_weights, tmp_path):
    bad = tmp_path / "broken.jpg"
    bad.write_text("this is text")
    weights = str(release_weights[32])
    result = run_cli("detect", str(bad), "--weights", weights, "--backend", "torch")
    assert result.returncode == 2
    assert "not an image" in result.stderr
    assert "Traceback" not in result.stderr


def test_conflicting_scale_options_are_a_clear_error(release_weights, dev_images):
    result = run_cli(
        "detect", str(dev_images[0]), "--weights", str(release_weights[32]),
        "--scale", "1", "--max-side", "512",
    )  # fmt: skip
    assert result.returncode == 2
    assert "either scale or max_side" in result.stderr


@pytest.mark.slow
def test_a_new_user_detects_with_the_weights_mirror_alone(new_user, photo):
    """No weights pulled before, no weights folder here: the default model is pulled from the
    mirror into the cache on first use, and the faces come out."""
    shutil.copyfile(photo, new_user.folder / "group.jpg")
    done = new_user.run("detect", "group.jpg", "--json", "--draw", "drawn")
    assert done.returncode == 0, done.stderr
    faces = np.array(json.loads(done.stdout)["group.jpg"])
    assert len(faces) >= 9
    assert faces[:, 4].min() > 0.5
    assert (new_user.cache / "weights" / "extd-64.safetensors").is_file()
    assert sorted(p.name for p in new_user.folder.iterdir()) == ["drawn", "group.jpg"]
    assert Image.open(new_user.folder / "drawn" / "group.jpg").size == (1024, 768)


def test_a_missing_image_is_a_clear_error(user):
    done = user.run("detect", "nowhere.jpg", "--backend", "torch")
    assert done.returncode == 2
    assert "nowhere.jpg" in done.stderr
    assert "Traceback" not in done.stderr
