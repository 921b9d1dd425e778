"""The cut after NMS: a lower threshold for small faces, rising with the size."""

import numpy as np
import pytest
import torch

from model.errors import OptionsError
from model.images import open_image
from model.inputs import prepare
from model.options import PRIVACY, PostprocessOptions, ScalePolicy
from model.postprocess import size_thresholds


def test_the_threshold_rises_from_small_to_four_times_that_size():
    option = PostprocessOptions(0.5, small_face_threshold=0.1, small_face_size=20)
    sizes = torch.tensor([5.0, 20.0, 40.0, 80.0, 400.0])
    np.testing.assert_allclose(size_thresholds(sizes, option), [0.1, 0.1, 0.3, 0.5, 0.5])
    plain = size_thresholds(sizes, PostprocessOptions(0.5))
    np.testing.assert_allclose(plain, [0.5] * 5)
    # A small-face threshold above score_threshold never raises it.
    higher = PostprocessOptions(0.05, small_face_threshold=0.5)
    assert higher.lowest_threshold == 0.05
    np.testing.assert_allclose(size_thresholds(sizes, higher), [0.05] * 5)


@pytest.mark.parametrize("changes", [{"small_face_threshold": 1.0}, {"small_face_size": 0}])
def test_bad_small_face_options(changes):
    with pytest.raises(OptionsError):
        PostprocessOptions(**changes)


def test_small_faces_are_kept_at_their_own_threshold(release_weights, dev_images):
    """PRIVACY's faces are the faces above its lowest threshold, each cut at its size's
    (in network input pixels: the photo is shrunk here, so the sizes differ from its own)."""
    from model.boxes import face_sizes
    from model.detector import Detector

    detector = Detector(release_weights[64], backend="torch")
    pixels = open_image(dev_images[2])
    item = prepare(pixels, detector.plan(pixels.shape[:2], ScalePolicy(max_side=640)))
    low = PostprocessOptions(PRIVACY.lowest_threshold, max_faces=0)
    (everything,), (kept,) = detector.run([item], [low]), detector.run([item], [PRIVACY])
    sizes = face_sizes(torch.from_numpy(everything)) * item.plan.scale
    cut = everything[everything[:, 4] > size_thresholds(sizes, PRIVACY).numpy()]
    np.testing.assert_array_equal(kept, cut)
    small = face_sizes(torch.from_numpy(kept)) * item.plan.scale < PRIVACY.small_face_size
    assert (kept[small.numpy(), 4] <= PRIVACY.score_threshold).any()  # kept for being small
    assert len(cut) < len(everything)
