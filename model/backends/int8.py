"""int8 for OpenVINO: post-training quantization with NNCF, calibrated on real photos.

The calibration set is a folder of photos
(:attr:`RuntimeOptions.calibration_dir <model.options.RuntimeOptions.calibration_dir>`,
searched recursively, every k-th up to ``calibration_images``), by default the
licence-clean photos shipped in ``model/calibration``. Each photo becomes
network input exactly as the service makes it (:mod:`model.inputs`, the
default scale policy and size buckets). The OpenVINO backend caches the
quantized model on disk under :func:`cache_key` (the checkpoint's hash, the
calibration set's hash and the OpenVINO and NNCF versions): it is built once,
never per request, never per process start after the first.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from model.checkpoint import Checkpoint
from model.errors import BackendError, ImageError
from model.inputs import load, network_batch
from model.options import DetectorOptions, RuntimeOptions, ScalePolicy

log = logging.getLogger(__name__)

# The licence-clean photos calibrated on when no folder is given (see its README).
SHIPPED_PHOTOS = Path(__file__).resolve().parents[1] / "calibration"
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}
# Network inputs as served: the default policy, padded to the default buckets.
_POLICY = ScalePolicy()
_BUCKET_STEP = DetectorOptions().bucket_step


def _import_nncf():
    try:
        import nncf
    except ImportError as error:
        raise BackendError(
            "the openvino-int8 backend needs: pip install 'extd-face[int8]'"
        ) from error
    return nncf


@dataclass(frozen=True)
class CalibrationSet:
    """The images NNCF measures activation ranges on."""

    files: tuple[Path, ...]

    @classmethod
    def from_options(cls, runtime: RuntimeOptions) -> CalibrationSet:
        return cls.from_folder(
            runtime.calibration_dir or SHIPPED_PHOTOS, runtime.calibration_images
        )

    @classmethod
    def from_folder(cls, folder: Path, limit: int) -> CalibrationSet:
        files = sorted(
            p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
        )
        if not files:
            raise BackendError(
                f"openvino-int8 needs calibration photos: {folder} holds no images "
                "(.jpg, .png, ...); set EXTD_CALIBRATION_DIR to a folder of real photos"
            )
        # Every k-th, so that a folder of folders (events, cameras) is covered evenly.
        return cls(tuple(files[:: max(1, len(files) // limit)][:limit]))

    @cached_property
    def sha256(self) -> str:
        """Changes when any image, the choice of images or their preparation changes."""
        digest = hashlib.sha256(f"served:{_POLICY}:{_BUCKET_STEP}".encode())
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
                item = load(path, _POLICY, _BUCKET_STEP)
            except ImageError as error:
                log.warning("calibration: skipping %s", error)
                continue
            yield network_batch([item], item.input_shape).numpy()


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
    # NNCF draws progress bars on stdout: they go to stderr, stdout is the caller's (--json).
    with contextlib.redirect_stdout(sys.stderr):
        return nncf.quantize(
            model,
            nncf.Dataset(calibration),
            preset=nncf.QuantizationPreset.PERFORMANCE,
            subset_size=len(calibration.files),
        )
