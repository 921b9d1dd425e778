"""int8 for OpenVINO: post-training quantization with NNCF, calibrated on real photos.

The calibration set is a folder of photos
(:attr:`RuntimeOptions.calibration_dir <model.options.RuntimeOptions.calibration_dir>`,
searched recursively, every k-th up to ``calibration_images``), by default the
licence-clean photos shipped in ``model/calibration``. Each photo becomes
network input exactly as the service makes it (:mod:`model.inputs`, the
default scale policy and size buckets), of which the :data:`WINDOW` at its
centre is measured, one photo at a time. The OpenVINO backend caches the
quantized model on disk under :func:`cache_key` (the checkpoint's hash, the
calibration set's hash, the recipe and the OpenVINO and NNCF versions): it is
built once, never per request, never per process start after the first.
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
from typing import Literal

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
# Statistics are measured at this one input size. NNCF measures them on a copy of the
# network that reduces every quantized activation (a copy and two reductions each), which
# keeps about 5 GB per megapixel of input: served photos of 2 megapixels and every size took
# 17 GB. A window of the served input keeps each face at the size it is served at, bounds
# the memory (about 1.5 GB here) and lets OpenVINO plan one static shape.
WINDOW = (512, 512)


@dataclass(frozen=True)
class Recipe:
    """How NNCF quantizes the network: what stays in float and how activations are ranged."""

    # "performance": symmetric activations and weights. "mixed" ranges activations
    # asymmetrically (PReLU outputs run negative) but ran 1.4 times slower than "performance"
    # on AMX, and OpenVINO 2026.4 crashed running its models on inputs of 128x128 and less.
    preset: Literal["performance", "mixed"] = "performance"
    float_stem: bool = True  # the first convolution, on the full-resolution photo
    float_heads: bool = True  # the detection heads' convolutions (scores and box offsets)
    # NNCF's bias correction: "fast" (from the layer's own outputs), "full" (layer by layer
    # through the quantized network, slower), or "none".
    bias_correction: Literal["fast", "full", "none"] = "fast"
    # How activation ranges come from the statistics: NNCF's range estimator sets
    # ("minmax": the extremes seen; "histogram": the range that keeps the error smallest).
    # (Per-channel activation quantizers keep "minmax" in NNCF whatever is chosen.)
    activation_ranges: Literal["minmax", "histogram", "mean_quantile"] = "histogram"

    def ignored_scope(self, model):
        """The layers kept in float, found in ``model`` by name (an error if missing)."""
        nncf = _import_nncf()
        names = [_first_convolution(model)] if self.float_stem else []
        patterns = [r".*\.(box|class)_heads\..*"] if self.float_heads else []
        return nncf.IgnoredScope(names=names, patterns=patterns)


# The recipe chosen on the dev split's tuning half (scripts/int8.py, docs/performance.md).
RECIPE = Recipe()


def _import_nncf():
    try:
        import nncf
    except ImportError as error:
        raise BackendError(
            "the openvino-int8 backend needs: pip install 'extd-face[int8]'"
        ) from error
    # Its INFO lines (a line per layer kept in float) go to stdout, which is the caller's.
    nncf.set_log_level(logging.WARNING)
    logging.getLogger("nncf").addFilter(_expected_fallback)
    return nncf


def _expected_fallback(record: logging.LogRecord) -> bool:
    """Drops NNCF's warning, once per quantizer, that a per-channel activation quantizer
    keeps "minmax" ranges under the "histogram" recipe: expected, and 30 lines a build."""
    return not record.getMessage().startswith("Rollback to RangeEstimatorParametersSet.MINMAX")


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
        digest = hashlib.sha256(f"served:{_POLICY}:{_BUCKET_STEP}:{WINDOW}".encode())
        for path in self.files:
            digest.update(path.name.encode())
            digest.update(hashlib.sha256(path.read_bytes()).digest())
        return digest.hexdigest()

    def __len__(self) -> int:
        return len(self.files)

    def __iter__(self) -> Iterator[np.ndarray]:
        """``(1, 3, *WINDOW)`` float32 network inputs, one per readable image, each decoded
        afresh when NNCF asks for it (never all held at once)."""
        for path in self.files:
            try:
                item = load(path, _POLICY, _BUCKET_STEP)
            except ImageError as error:
                log.warning("calibration: skipping %s", error)
                continue
            yield _window(network_batch([item], item.input_shape).numpy())


def _window(batch: np.ndarray) -> np.ndarray:
    """The :data:`WINDOW` at the centre of a ``(1, 3, H, W)`` input, zero padded (as the
    size buckets pad) where the input is smaller."""
    height, width = WINDOW
    window = np.zeros((1, 3, height, width), np.float32)
    rows, cols = min(height, batch.shape[2]), min(width, batch.shape[3])
    top, left = (batch.shape[2] - rows) // 2, (batch.shape[3] - cols) // 2
    window[:, :, :rows, :cols] = batch[:, :, top : top + rows, left : left + cols]
    return window


def _first_convolution(model) -> str:
    return next(
        op.get_friendly_name()
        for op in model.get_ordered_ops()
        if op.get_type_name() == "Convolution"
    )


def cache_key(checkpoint: Checkpoint, calibration: CalibrationSet, recipe: Recipe = RECIPE) -> str:
    """What the quantized model depends on: weights, calibration images, recipe, libraries."""
    import openvino

    nncf = _import_nncf()
    parts = (
        checkpoint.sha256,
        calibration.sha256,
        repr(recipe),
        openvino.__version__,
        nncf.__version__,
    )
    return hashlib.sha256("|".join(parts).encode()).hexdigest()


def quantize(model, calibration: CalibrationSet, recipe: Recipe = RECIPE):
    """The OpenVINO model (dynamic input shape, as converted) with int8 weights and
    activations; ``model`` is reshaped to :data:`WINDOW` on the way."""
    nncf = _import_nncf()
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters
    from nncf.quantization.range_estimator import RangeEstimatorParametersSet

    log.info(
        "quantizing to int8 on %d calibration images (once; the result is cached)",
        len(calibration.files),
    )
    model.reshape([1, 3, *WINDOW])
    # NNCF draws progress bars on stdout: they go to stderr, stdout is the caller's (--json).
    ranges = getattr(RangeEstimatorParametersSet, recipe.activation_ranges.upper())
    with contextlib.redirect_stdout(sys.stderr):
        quantized = nncf.quantize(
            model,
            nncf.Dataset(calibration),
            preset=nncf.QuantizationPreset(recipe.preset),
            subset_size=len(calibration.files),
            fast_bias_correction=recipe.bias_correction != "full",
            ignored_scope=recipe.ignored_scope(model),
            advanced_parameters=AdvancedQuantizationParameters(
                disable_bias_correction=recipe.bias_correction == "none",
                activations_range_estimator_params=ranges,
            ),
        )
    quantized.reshape([-1, 3, -1, -1])  # int8 ranges do not depend on the size
    return quantized
