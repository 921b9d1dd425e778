"""``python -m model eval``, as a user runs it: a detector or a prediction folder, scored the
official way."""

import json

import numpy as np
import pytest
from helpers import FAST_FP32
from splits import write_split
from wider_protocol import official_ap

from model.conventions import corners_to_prediction
from model.eval import evaluate, load_split, read_predictions, write_predictions
from model.eval.predictions import image_key


def summary(done) -> dict:
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_a_detector_is_scored_as_the_official_protocol_scores_it(user, dev_split):
    """The command's AP is the independent port's AP of the predictions it wrote."""
    done = user.run(
        "eval", "--weights", "extd-64", "--split", dev_split, "--limit", "12", "--json",
        "--pred-out", "predictions",
    )  # fmt: skip
    result = summary(done)
    assert result["images"] == 12
    written = read_predictions(user.folder / "predictions")
    assert len(written) == 12
    theirs = official_ap(written, load_split(dev_split).subset(12))
    for setting, ap in theirs.items():
        assert result[setting] == pytest.approx(ap, abs=1e-4)
    assert result["hard"] > 0.7
    for setting in ("easy", "medium", "hard"):
        assert f"{setting:6s} AP {result[setting]:.4f}" in done.stdout


@pytest.mark.slow
@pytest.mark.parametrize("width", [32, 64])
def test_a_detector_scores_the_releases_ap(user, reference, dev_split, tmp_path, width):
    """On the photos the release's own detections cover, at its protocol (each image at its
    own size, fp32), the command's AP is the release's within 0.005."""
    released = {p: faces for p, faces in reference[width].items() if p.is_relative_to(dev_split)}
    assert len(released) >= 8
    names = sorted(p.relative_to(dev_split / "images").as_posix() for p in released)
    split_folder = write_split(tmp_path / "split", dev_split, names)
    split = load_split(split_folder)
    releases = {
        image_key(p.relative_to(dev_split / "images").as_posix()): corners_to_prediction(faces)
        for p, faces in released.items()
    }
    expected = evaluate(releases, split).ap
    done = user.run(
        "eval", "--weights", f"extd-{width}", "--split", split_folder, "--scale", "1",
        "--backend", FAST_FP32, "--json",
    )  # fmt: skip
    result = summary(done)
    assert result["images"] == len(released)
    for setting, ap in expected.items():
        assert result[setting] == pytest.approx(ap, abs=0.005), (setting, result, expected)


@pytest.mark.slow
def test_a_prediction_folder_is_scored_with_a_plot(user, dev_split):
    split = load_split(dev_split).subset(10)
    rng = np.random.default_rng(0)
    predictions = {
        image_key(name): np.c_[boxes + rng.normal(0, 1, boxes.shape), rng.uniform(0, 1, len(boxes))]
        for name, boxes in split.boxes.items()
        if name in split.images
    }
    write_predictions(user.folder / "mine", predictions)
    done = user.run(
        "eval", "--pred", "mine", "--split", dev_split, "--limit", "10", "--json", "--plot",
        "curves.png",
    )  # fmt: skip
    result = summary(done)
    theirs = official_ap(predictions, split)
    assert result == pytest.approx({**theirs, "images": 10}, abs=1e-4)
    assert (user.folder / "curves.png").stat().st_size > 10_000


def test_a_split_that_is_not_one_is_a_clear_error(user, tmp_path):
    done = user.run("eval", "--weights", "extd-64", "--split", tmp_path)
    assert done.returncode == 2
    assert "bbx_gt.txt" in done.stderr
    assert "Traceback" not in done.stderr
