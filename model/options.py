"""The typed options of detection: how a Detector runs, how images are sized, what is kept.

Each default lives here once. The command-line flags (``model.commands``)
and the service's settings and query parameters are derived from these
objects, help text included. No torch import, so reading them is cheap.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from model.conventions import PAPER_MAX_AREA, RELIABLE_FACE
from model.errors import OptionsError

BACKENDS = (
    "auto",
    "torch",
    "torch-fused",
    "torch-bf16",
    "torch-compiled",
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
    small_face_threshold: float | None = described(
        None,
        "faces under small_face_size are kept above this lower score instead, and the "
        "threshold rises to score_threshold at 4 times that size: a small box hides little "
        "of the picture, so a doubtful one costs little",
        unset="score_threshold at every size",
    )
    small_face_size: int = described(
        20,
        "the size below which small_face_threshold applies: the longer side of a box, in "
        "pixels of the network's input",
    )

    def __post_init__(self) -> None:
        if not 0.0 <= self.score_threshold < 1.0:
            raise OptionsError(f"score_threshold must be in [0, 1), got {self.score_threshold}")
        if self.small_face_threshold is not None and not 0.0 <= self.small_face_threshold < 1.0:
            raise OptionsError(
                f"small_face_threshold must be in [0, 1), got {self.small_face_threshold}"
            )
        if self.small_face_size < 1:
            raise OptionsError(f"small_face_size must be >= 1, got {self.small_face_size}")
        if not 0.0 < self.nms_iou <= 1.0:
            raise OptionsError(f"nms_iou must be in (0, 1], got {self.nms_iou}")
        if self.max_faces < 0:
            raise OptionsError(f"max_faces must be >= 0 (0 = no limit), got {self.max_faces}")

    @property
    def lowest_threshold(self) -> float:
        """The lowest score any face is kept at (what the network's output is cut at)."""
        if self.small_face_threshold is None:
            return self.score_threshold
        return min(self.score_threshold, self.small_face_threshold)


RELEASE = PostprocessOptions()
# The service and the CLI answer people, not the AP curve: the release's 0.05
# keeps hundreds of doubtful boxes on a crowd photo (504 on one parade image,
# 14 of them >= 0.5), and its cap of 750 only bounds the evaluator's work.
SERVING = PostprocessOptions(score_threshold=0.5, max_faces=0)
# Hiding faces errs the other way: a face left visible is a leak, a hidden patch of
# background costs little, and a small box costs least. Chosen with the default masks
# (model.anonymize.AnonymizeOptions) on the tuning half of the dev split and reported on
# both halves (bench/anonymize.py, docs/anonymization.md).
PRIVACY = PostprocessOptions(
    score_threshold=0.5, max_faces=0, small_face_threshold=0.15, small_face_size=20
)


@dataclass(frozen=True)
class ScalePolicy:
    """How an image is resized before detection, and the smallest face wanted.

    ``scale`` resizes by a fixed factor and runs the exact size (no padding).
    Otherwise the image is shrunk, never enlarged, until its long side is at
    most ``max_side``, its area at most ``max_area`` (by default the paper's
    1700x1200 bound) and a face of ``min_face`` pixels comes out at
    :data:`~model.conventions.RELIABLE_FACE` pixels (small enough a face for
    the network to find), then padded to its size bucket. Faces smaller than
    ``min_face`` (the longer side of the box, in the image's pixels, with
    :data:`~model.conventions.MIN_FACE_TOLERANCE` for the boxes' spread) are
    dropped from the answer, with ``scale`` too.
    """

    scale: float | None = described(
        None, "resize by this factor and run the exact size (1 = each image at its own size)"
    )
    max_side: int | None = described(None, "shrink so the long side is at most this")
    max_area: int | None = described(
        None, "shrink so the area is at most this", unset=f"{PAPER_MAX_AREA} (1700x1200)"
    )
    min_face: int | None = described(
        None,
        "the smallest face wanted, in pixels: the image is shrunk so such a face is still "
        "found (less work for large minimums) and smaller faces are dropped",
        unset="none: every face the network finds",
    )

    def __post_init__(self) -> None:
        if self.scale is not None and (self.max_side is not None or self.max_area is not None):
            raise OptionsError("give either scale or max_side/max_area, not both")
        for name in ("scale", "max_side", "max_area", "min_face"):
            value = getattr(self, name)
            if value is not None and not (value > 0 and math.isfinite(value)):
                raise OptionsError(f"{name} must be a positive number, got {value}")

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
        if self.min_face is not None:
            factor = min(factor, RELIABLE_FACE / self.min_face)
        return factor


ENV_PREFIX = "EXTD_"


@dataclass(frozen=True)
class RuntimeOptions:
    """Where the model package keeps and finds things, and process tuning.

    Passed down explicitly; only the entry points read the environment
    (:meth:`from_environment` for the CLI, the service's settings), each field
    as ``EXTD_<NAME>``.
    """

    cache_dir: Path = described(
        Path.home() / ".cache" / "extd",
        "converted and quantized models, fetched test data",
        unset="~/.cache/extd",
    )
    weights_dir: Path | None = described(
        None,
        "where registry names are looked up and released weights are pulled to",
        unset="weights in the cache folder",
    )
    weights_mirror: str | None = described(
        None, "folder or base URL replacing the public URL of the released weights"
    )
    data_mirror: str | None = described(
        None, "folder or base URL replacing the public sources of the test data"
    )
    calibration_dir: Path | None = described(
        None,
        "photos openvino-int8 is calibrated on (searched recursively)",
        unset="the licence-clean set shipped in model/calibration",
    )
    calibration_images: int = described(300, "calibration photos used at most (every k-th)")
    tune_allocator: bool = described(
        True, "serve large blocks from glibc's heap instead of mmap (see model/runtime.py)"
    )

    @property
    def weights_folder(self) -> Path:
        """:attr:`weights_dir`, else ``weights`` in the cache folder: a registry name then
        means the same checkpoint from whatever folder a command runs in."""
        return self.weights_dir or self.cache_dir / "weights"

    @classmethod
    def from_environment(cls, environ: Mapping[str, str]) -> RuntimeOptions:
        """The options set in ``environ`` (``EXTD_CACHE_DIR``, ...); empty values are unset."""
        values: dict[str, Any] = {}
        for item in fields(cls):
            text = environ.get(ENV_PREFIX + item.name.upper())
            if not text:
                continue
            default = item.default
            if isinstance(default, bool):
                values[item.name] = text.strip().lower() not in ("0", "false", "no", "off")
            elif isinstance(default, int):
                try:
                    values[item.name] = int(text)
                except ValueError as error:
                    name = ENV_PREFIX + item.name.upper()
                    raise OptionsError(f"{name} must be a whole number, got {text!r}") from error
            elif item.name.endswith("_dir"):
                values[item.name] = Path(text)
            else:
                values[item.name] = text
        return cls(**values)
