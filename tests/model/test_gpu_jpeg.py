"""The GPU input path's orientation, against the CPU's (decoding itself needs CUDA:
tests/model/test_cuda.py)."""

import numpy as np
import pytest
import torch

from model.gpu_jpeg import decodable, upright
from model.images import ImageHeader, _upright


@pytest.mark.parametrize("orientation", range(1, 9))
def test_every_exif_orientation_turns_as_on_the_cpu(orientation):
    stored = np.random.default_rng(orientation).integers(0, 255, (5, 7, 3), dtype=np.uint8)
    expected = _upright(stored, orientation)
    assert np.array_equal(upright(torch.from_numpy(stored), orientation).numpy(), expected)


def test_what_nvjpeg_takes():
    assert decodable(ImageHeader(10, 10, "JPEG", "RGB"))
    assert decodable(ImageHeader(10, 10, "JPEG", "L"))
    assert not decodable(ImageHeader(10, 10, "JPEG", "CMYK"))
    assert not decodable(ImageHeader(10, 10, "PNG", "RGB"))
