"""The WIDER / release box conventions: each conversion does what its name says."""

import numpy as np

from model.conventions import (
    ANCHOR_SIZES,
    SOURCE_STRIDES,
    corners_to_prediction,
    gt_to_corners,
    prediction_to_corners,
)


def test_prediction_boxes_convert_both_ways():
    faces = np.array([[10.0, 20.0, 29.0, 59.0, 0.8]])
    wider = corners_to_prediction(faces)
    np.testing.assert_array_equal(wider, [[10, 20, 20, 40, 0.8]])  # +1 pixel widths
    np.testing.assert_array_equal(prediction_to_corners(wider), faces[:, :4])


def test_ground_truth_corners_are_x_plus_w():
    # The official tool's reading: one pixel wider than the prediction files' inverse.
    gt = np.array([[10.0, 20.0, 20.0, 40.0, 1.0]])
    np.testing.assert_array_equal(gt_to_corners(gt), [[10, 20, 30, 60]])
    np.testing.assert_array_equal(prediction_to_corners(gt)[:, 2:] + 1, gt_to_corners(gt)[:, 2:])


def test_anchors_double_from_map_to_map():
    assert SOURCE_STRIDES == (4, 8, 16, 32, 64, 128)
    assert ANCHOR_SIZES == (16, 32, 64, 128, 256, 512)
    assert all(
        size == 4 * stride for size, stride in zip(ANCHOR_SIZES, SOURCE_STRIDES, strict=True)
    )
