"""Assertions shared by the model and service tests."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch

from model.boxes import box_iou

HAS_OPENVINO = importlib.util.find_spec("openvino") is not None
needs_openvino = pytest.mark.skipif(
    not HAS_OPENVINO, reason="needs the openvino extra: pip install 'extd-face[openvino]'"
)
HAS_NNCF = importlib.util.find_spec("nncf") is not None
needs_nncf = pytest.mark.skipif(
    not HAS_NNCF, reason="needs the int8 extra: pip install 'extd-face[int8]'"
)
# The fastest backend that gives the release's boxes (fp32) here.
FAST_FP32 = "openvino" if HAS_OPENVINO else "torch-fused"


def assert_same_faces(
    found: np.ndarray,
    expected: np.ndarray,
    *,
    min_score: float = 0.3,
    min_iou: float = 0.99,
    score_tolerance: float = 1e-3,
) -> None:
    """The parity criterion: every expected face >= ``min_score`` is found at IoU >=
    ``min_iou`` with a score within ``score_tolerance``, and nothing extra is found
    above ``min_score``."""
    found = np.asarray(found, dtype=np.float32).reshape(-1, 5)
    expected = np.asarray(expected, dtype=np.float32).reshape(-1, 5)
    for a, b, what in ((expected, found, "missing"), (found, expected, "extra")):
        strong = torch.from_numpy(a[a[:, 4] >= min_score])
        if not len(strong):
            continue
        others = torch.from_numpy(b)
        assert len(others), f"{what}: {len(strong)} faces >= {min_score}, none on the other side"
        iou = box_iou(strong[:, :4], others[:, :4])
        close = (iou >= min_iou) & (
            (strong[:, None, 4] - others[None, :, 4]).abs() <= score_tolerance
        )
        unmatched = strong[~close.any(dim=1)]
        assert not len(unmatched), f"{what} faces (x1 y1 x2 y2 score):\n{unmatched.numpy()}"


def assert_problem(response, status: int, code: str) -> dict:
    """An RFC 9457 problem document with this status and code; returns its body."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert (body["status"], body["code"]) == (status, code)
    assert body["detail"]
    return body


def upload(*payloads: bytes, field: str = "images") -> dict:
    """``files=`` of a multipart request carrying ``payloads`` in ``field``."""
    return {
        "files": [
            (field, (f"im{i}", p, "application/octet-stream")) for i, p in enumerate(payloads)
        ]
    }
