"""int8 for OpenVINO: post-training quantization with NNCF, calibrated on real photos.

The calibration set is a folder of images (``EXTD_CALIBRATION_DIR``, searched
recursively; ``EXTD_CALIBRATION_IMAGES`` of them, every k-th in path order). Each image
is shrunk into the calibration size and mean-subtracted as the Detector does.
The OpenVINO backend caches the quantized model on disk under
:func:`cache_key` (the checkpoint's hash, the calibration set's hash and the
OpenVINO and NNCF versions): it is built once, never per request, never per
process start after the first.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
from PIL import Image

from model.checkpoint import Checkpoint
from model.conventions import MEAN_RGB
from model.images import ImageError, open_image

log = logging.getLogger(__name__)

CALIBRATION_DIR_ENV = "EXTD_CALIBRATION_DIR"
CALIBRATION_IMAGES_ENV = "EXTD_CALIBRATION_IMAGES"
DEFAULT_IMAGES = 300
# Calibration inputs: photos shrunk to fit 1024x768 (either way up), the size of most WIDER images.
CALIBRATION_SIDES = (1024, 768)
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}


def _import_nncf():
    try:
        import nncf
    except ImportError as error:
        raise RuntimeError(
            "the openvino-int8 backend needs: pip install 'extd-face[int8]'"
        ) from error
    return nncf


@dataclass(frozen=True)
class CalibrationSet:
    """The images NNCF measures activation ranges on."""

    files: tuple[Path, ...]

    @classmethod
    def from_environment(cls) -> CalibrationSet:
        folder = os.environ.get(CALIBRATION_DIR_ENV)
        if not folder:
            raise ValueError(
                f"openvino-int8 needs calibration photos: set {CALIBRATION_DIR_ENV} to a folder "
                "of a few hundred real images like those it will see"
            )
        limit = int(os.environ.get(CALIBRATION_IMAGES_ENV) or DEFAULT_IMAGES)
        return cls.from_folder(Path(folder), limit)

    @classmethod
    def from_folder(cls, folder: Path, limit: int = DEFAULT_IMAGES) -> CalibrationSet:
        files = sorted(
            p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
        )
        if not files:
            raise ValueError(f"{folder}: no calibration images (.jpg, .png, ...) found")
        # Every k-th, so that a folder of folders (events, cameras) is covered evenly.
        return cls(tuple(files[:: max(1, len(files) // limit)][:limit]))

    @cached_property
    def sha256(self) -> str:
        """Changes when any image, or the choice of images, changes."""
        digest = hashlib.sha256(repr(CALIBRATION_SIDES).encode())
        for path in self.files:
            digest.update(path.name.encode())
            digest.update(hashlib.sha256(path.read_bytes()).digest())
        return digest.hexdigest()

    def __len__(self) -> int:
        return len(self.files)

    def __iter__(self) -> Iterator[np.ndarray]:
        """``(1, 3, H, W)`` float32 network inputs, one per readable image, decoded afresh on
        every pass (a few hundred photos at 1024x768 would take gigabytes held at once)."""
        for path in self.files:
            try:
                pixels = open_image(path)
            except ImageError as error:
                log.warning("calibration: skipping %s", error)
                continue
            height, width = pixels.shape[:2]
            long_side, short_side = CALIBRATION_SIDES
            bound = (long_side, short_side) if width >= height else (short_side, long_side)
            factor = min(1.0, bound[0] / width, bound[1] / height)
            size = (max(1, round(width * factor)), max(1, round(height * factor)))
            image = Image.fromarray(pixels).resize(size, Image.Resampling.BILINEAR)
            array = np.asarray(image, dtype=np.float32) - np.asarray(MEAN_RGB, np.float32)
            yield array.transpose(2, 0, 1)[None].copy()


def cache_key(checkpoint: Checkpoint, calibration: CalibrationSet) -> str:
    """What the quantized model depends on: weights, calibration images, library versions."""
    import openvino

    nncf = _import_nncf()
    parts = (checkpoint.sha256, calibration.sha256, openvino.__version__, nncf.__version__)
    return hashlib.sha256("|".join(parts).encode()).hexdigest()


def quantize(model, calibration: CalibrationSet):
    """The OpenVINO model with int8 weights and activations (NNCF's performance preset)."""
    nncf = _import_nncf()
    log.info(
        "quantizing to int8 on %d calibration images (once; the result is cached)",
        len(calibration.files),
    )
    return nncf.quantize(
        model,
        nncf.Dataset(calibration),
        preset=nncf.QuantizationPreset.PERFORMANCE,
        subset_size=len(calibration.files),
    )
