"""Box-by-box comparison of two prediction sets."""

import numpy as np
import pytest

from model.eval.compare import faces_found


def test_identical_sets_find_every_strong_face():
    faces = np.array([[10, 10, 20, 20, 0.9], [50, 50, 30, 30, 0.6], [0, 0, 5, 5, 0.2]])
    result = faces_found({"e/a": faces}, {"e/a": faces.copy()})
    assert (result.found, result.total, result.missed_iou) == (2, 2, ())
    assert result.fraction == 1.0


def test_moved_weak_and_missing_faces():
    reference = {
        "e/a": np.array([[10, 10, 20, 20, 0.9], [100, 100, 20, 20, 0.8]]),
        "e/b": np.array([[30, 30, 10, 10, 0.7]]),
        "e/c": np.array([[0, 0, 8, 8, 0.4]]),  # under the score bound: not counted
    }
    candidate = {
        "e/a": np.array([[10, 10, 20, 20, 0.85], [105, 100, 20, 20, 0.8]]),  # IoU 15/25
        "e/c": np.zeros((0, 5)),
    }
    result = faces_found(reference, candidate)
    assert (result.found, result.total) == (1, 3)
    assert result.missed_iou == pytest.approx((0.0, 0.6))
    assert result.fraction == pytest.approx(1 / 3)


def test_no_strong_faces_is_a_perfect_match():
    assert faces_found({"e/a": np.zeros((0, 5))}, {}).fraction == 1.0
