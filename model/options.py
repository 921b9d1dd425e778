"""The typed options of detection: how a Detector runs, how images are sized, what is kept.

Each default lives here once. The command-line flags (``model.commands``)
and the service's settings and query parameters are derived from these
objects, help text included. No torch import, so reading them is cheap.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Any

from model.conventions import PAPER_MAX_AREA

BACKENDS = (
    "auto",
    "torch",
    "torch-fused",
    "torch-bf16",
    "openvino",
    "openvino-bf16",
    "openvino-int8",
)


def described(default: Any, text: str, **more: Any) -> Any:
    """A dataclass field whose help text travels with it (to flags, settings and docs)."""
    return field(default=default, metadata={"help": text, **more})


def help_text(options: type, name: str) -> str:
    """The help text of one field of an options dataclass."""
    return next(f.metadata["help"] for f in fields(options) if f.name == name)


@dataclass(frozen=True)
class DetectorOptions:
    """Where and how the network runs."""

    backend: str = described(
        "auto",
        "inference backend; auto = the fastest one that keeps fp32's accuracy on this machine",
        choices=BACKENDS,
    )
    device: str = described("cpu", "torch device: cpu, cuda, cuda:1, ...")
    bucket_step: int = described(128, "padded input sizes are multiples of this")
    batch_size: int = described(16, "images per forward pass at most")
    batch_pixels: int = described(
        3 * 2**20,
        "network input pixels per forward pass at most (a larger image still runs, alone): "
        "activations take about 0.7 KB per input pixel, so this bounds a batch's memory",
    )


@dataclass(frozen=True)
class PostprocessOptions:
    """Thresholds applied after the network.

    The defaults are the release's (scores above 0.05, NMS IoU 0.3, at most
    750 faces): what the WIDER AP is computed with, and what reproduces the
    release's detections. People want :data:`SERVING` instead.
    """

    score_threshold: float = described(0.05, "keep faces scoring above this")
    nms_iou: float = described(0.3, "IoU above which NMS drops the lower-scoring box")
    max_faces: int = described(750, "keep the highest-scoring N (0 = no limit)")

    def __post_init__(self) -> None:
        if not 0.0 <= self.score_threshold < 1.0:
            raise ValueError(f"score_threshold must be in [0, 1), got {self.score_threshold}")
        if not 0.0 < self.nms_iou <= 1.0:
            raise ValueError(f"nms_iou must be in (0, 1], got {self.nms_iou}")
        if self.max_faces < 0:
            raise ValueError(f"max_faces must be >= 0 (0 = no limit), got {self.max_faces}")


RELEASE = PostprocessOptions()
# The service and the CLI answer people, not the AP curve: the release's 0.05
# keeps hundreds of doubtful boxes on a crowd photo (504 on one parade image,
# 14 of them >= 0.5), and its cap of 750 only bounds the evaluator's work.
SERVING = PostprocessOptions(score_threshold=0.5, max_faces=0)


@dataclass(frozen=True)
class ScalePolicy:
    """How an image is resized before detection.

    ``scale`` resizes by a fixed factor and runs the exact size (no padding).
    Otherwise the image is shrunk, never enlarged, until its long side is at
    most ``max_side`` and its area at most ``max_area`` (by default the
    paper's 1700x1200 bound), then padded to its size bucket.
    """

    scale: float | None = described(
        None, "resize by this factor and run the exact size (1 = each image at its own size)"
    )
    max_side: int | None = described(None, "shrink so the long side is at most this")
    max_area: int | None = described(
        None, "shrink so the area is at most this", unset=f"{PAPER_MAX_AREA} (1700x1200)"
    )

    def __post_init__(self) -> None:
        if self.scale is not None and (self.max_side is not None or self.max_area is not None):
            raise ValueError("give either scale or max_side/max_area, not both")
        for name in ("scale", "max_side", "max_area"):
            value = getattr(self, name)
            if value is not None and not (value > 0 and math.isfinite(value)):
                raise ValueError(f"{name} must be a positive number, got {value}")

    @property
    def exact(self) -> bool:
        return self.scale is not None

    def factor(self, height: int, width: int) -> float:
        if self.scale is not None:
            return self.scale
        factor = 1.0
        if self.max_side is not None:
            factor = min(factor, self.max_side / max(height, width))
        if self.max_area is not None or self.max_side is None:
            factor = min(factor, math.sqrt((self.max_area or PAPER_MAX_AREA) / (height * width)))
        return factor
