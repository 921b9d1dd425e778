"""The typed options: validation, the scale policy, and the presets the front ends use."""

import dataclasses

import pytest

from model.options import (
    BACKENDS,
    RELEASE,
    SERVING,
    DetectorOptions,
    PostprocessOptions,
    ScalePolicy,
    help_text,
)


def test_scale_policy():
    assert ScalePolicy().factor(1200, 1700) == pytest.approx(1.0)
    assert ScalePolicy().factor(2400, 3400) == pytest.approx(0.5)
    assert ScalePolicy().factor(100, 100) == 1.0  # never upscales
    assert ScalePolicy(scale=2.0).factor(100, 100) == 2.0
    assert ScalePolicy(max_side=640).factor(480, 1280) == 0.5
    assert ScalePolicy(max_side=640, max_area=100 * 100).factor(480, 1280) == pytest.approx(
        (10_000 / (480 * 1280)) ** 0.5
    )
    with pytest.raises(ValueError, match="either scale"):
        ScalePolicy(scale=1.0, max_side=3)
    with pytest.raises(ValueError, match="positive"):
        ScalePolicy(scale=0.0)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"score_threshold": 1.0}, "score_threshold"),
        ({"score_threshold": -0.1}, "score_threshold"),
        ({"nms_iou": 0.0}, "nms_iou"),
        ({"max_faces": -1}, "max_faces"),
    ],
)
def test_postprocess_options_refuse_bad_values(changes, message):
    with pytest.raises(ValueError, match=message):
        PostprocessOptions(**changes)


def test_presets():
    assert (RELEASE.score_threshold, RELEASE.nms_iou, RELEASE.max_faces) == (0.05, 0.3, 750)
    # Serving differs from the release only where people differ from the evaluator.
    assert (SERVING.score_threshold, SERVING.nms_iou, SERVING.max_faces) == (0.5, 0.3, 0)
    assert DetectorOptions().backend in BACKENDS


def test_every_field_has_help_text():
    for options in (DetectorOptions, PostprocessOptions, ScalePolicy):
        for field in dataclasses.fields(options):
            assert help_text(options, field.name), f"{options.__name__}.{field.name}"
