"""EXTD, the Extremely Tiny Face Detector: network, checkpoints and a batched detector.

Names are imported on first use, so ``import model.options`` (or the
service's settings) does not load torch.
"""

# ruff: noqa: F401  (the imports under TYPE_CHECKING are for type checkers only)
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "ALL_VARIANTS": "model.variants",
    "EXTD": "model.network",
    "Checkpoint": "model.checkpoint",
    "CheckpointError": "model.errors",
    "Detector": "model.detector",
    "DetectorOptions": "model.options",
    "ExtdError": "model.errors",
    "ImageError": "model.errors",
    "ImageTooLargeError": "model.errors",
    "InputPlan": "model.inputs",
    "PostprocessOptions": "model.options",
    "PreparedImage": "model.inputs",
    "RuntimeOptions": "model.options",
    "ScalePolicy": "model.options",
    "Variant": "model.variants",
    "WeightsError": "model.errors",
    "count_parameters": "model.network",
    "load_checkpoint": "model.weights",
    "open_image": "model.images",
    "pull": "model.weights",
    "read_header": "model.images",
    "read_checkpoint": "model.checkpoint",
    "save_checkpoint": "model.checkpoint",
}

__all__ = sorted(_EXPORTS)

if TYPE_CHECKING:  # the names as type checkers and editors see them
    from model.checkpoint import Checkpoint, read_checkpoint, save_checkpoint
    from model.detector import Detector
    from model.errors import (
        CheckpointError,
        ExtdError,
        ImageError,
        ImageTooLargeError,
        WeightsError,
    )
    from model.images import open_image, read_header
    from model.inputs import InputPlan, PreparedImage
    from model.network import EXTD, count_parameters
    from model.options import DetectorOptions, PostprocessOptions, RuntimeOptions, ScalePolicy
    from model.variants import ALL_VARIANTS, Variant
    from model.weights import load_checkpoint, pull


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'model' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)


def __dir__() -> list[str]:
    return [*globals(), *__all__]
