"""The conventions of WIDER FACE and the EXTD release that detection, evaluation and training share.

Box formats are the trap here: WIDER files give ``x y w h``, but the ground
truth and the release's prediction files turn them into corners differently.
Each conversion lives once, below, under a name that says which it is.
No torch: the service reads these without loading the model stack.
"""

from __future__ import annotations

import numpy as np

from model.variants import NUM_SOURCES

# Per-channel mean (RGB, 0-255 pixels) the release subtracts before the network.
MEAN_RGB = (123.0, 117.0, 104.0)

# Detection maps: strides 4 to 128, one square anchor per location, 16 to 512 px.
SOURCE_STRIDES = tuple(4 * 2**k for k in range(NUM_SOURCES))
ANCHOR_SIZES = tuple(16 * 2**k for k in range(NUM_SOURCES))

# The paper's test-time area bound: images are shrunk to at most 1700x1200 pixels.
PAPER_MAX_AREA = 1700 * 1200

# ``min_face`` shrinks an image until the smallest face wanted (the longer side of its box)
# is this many pixels in the network input: a quarter of the input pixels for a minimum of
# 40 pixels on a 1024x768 photo (bench/min_face.py, docs/performance.md "Smallest face").
RELIABLE_FACE = 20
# A face is dropped when its box is under this share of ``min_face``: a box that small
# still overlaps a face of ``min_face`` at IoU 0.5 (1/sqrt(2)), so no wanted face is lost
# to the spread of the network's boxes.
MIN_FACE_TOLERANCE = 0.7


def gt_to_corners(xywh: np.ndarray) -> np.ndarray:
    """Ground-truth ``x y w h ...`` -> ``x1 y1 x2 y2`` with ``x2 = x + w``.

    This is how the official evaluation tool and the release's training code
    read WIDER's boxes (with the tool's +1 IoU convention such a box is one
    pixel wider than ``w``: kept, so the AP agrees with the official tool).
    """
    corners = np.array(xywh[:, :4], dtype=np.float64)
    corners[:, 2:4] += corners[:, 0:2]
    return corners


def corners_to_prediction(faces: np.ndarray) -> np.ndarray:
    """``x1 y1 x2 y2 score`` -> the prediction files' ``x y w h score`` (``w = x2 - x1 + 1``)."""
    faces = np.asarray(faces, dtype=np.float64).reshape(-1, 5)
    wider = faces.copy()
    wider[:, 2:4] = faces[:, 2:4] - faces[:, 0:2] + 1
    return wider


def prediction_to_corners(wider: np.ndarray) -> np.ndarray:
    """Prediction-file ``x y w h ...`` -> ``x1 y1 x2 y2``, the exact inverse of
    :func:`corners_to_prediction` (``x2 = x + w - 1``)."""
    corners = np.array(wider[:, :4], dtype=np.float64)
    corners[:, 2:4] += corners[:, 0:2] - 1
    return corners
