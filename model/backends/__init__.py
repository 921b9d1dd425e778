"""Inference backends: what runs the network's forward pass for the Detector.

``torch`` is the fp32 eager reference path and always works. The others
must give the same detections (fp32) or the same accuracy (reduced
precision: hard AP on the WIDER dev split within 0.3 points of fp32).
``auto`` picks, per checkpoint, the fastest that does on this machine:
``torch-bf16`` on a GPU; on a CPU ``openvino-int8`` for a checkpoint whose
int8 loss was measured at 0.3 points or less (EXTD-48 and EXTD-64, see
:func:`model.weights.int8_hard_ap_loss`), else ``openvino-bf16`` where the CPU
has bf16 instructions, else ``openvino``, else ``torch-fused``.
"""

from __future__ import annotations

import importlib.util
import logging
from typing import Protocol

import torch
from torch import Tensor

from model.checkpoint import Checkpoint
from model.errors import BackendError, OptionsError
from model.options import BACKENDS, RuntimeOptions
from model.weights import int8_hard_ap_loss

log = logging.getLogger(__name__)

# Hard AP points a reduced precision may lose against fp32 and still be picked by ``auto``.
AUTO_TOLERANCE = 0.3


class Backend(Protocol):
    """Maps a normalised ``(N, 3, H, W)`` float batch to float32 ``(offsets, logits)``."""

    name: str
    device: torch.device

    def __call__(self, batch: Tensor) -> tuple[Tensor, Tensor]: ...

    def release_memory(self) -> None:
        """Free the buffers kept for the largest shapes seen (they come back on demand)."""


def resolve_backend(name: str, device: torch.device, checkpoint: Checkpoint | None = None) -> str:
    """The concrete backend ``auto`` stands for on ``device`` (for ``checkpoint``)."""
    if name != "auto":
        return name
    if device.type == "cuda":
        return "torch-bf16"
    if importlib.util.find_spec("openvino") is None:
        return "torch-fused"
    loss = int8_hard_ap_loss(checkpoint) if checkpoint is not None else None
    if loss is not None and loss <= AUTO_TOLERANCE and importlib.util.find_spec("nncf"):
        return "openvino-int8"
    from model.backends.openvino import supports_bf16

    return "openvino-bf16" if supports_bf16() else "openvino"


def create_backend(
    name: str, checkpoint: Checkpoint, device: torch.device, runtime: RuntimeOptions
) -> Backend:
    """The backend ``name`` over ``checkpoint``; converted models go to ``runtime.cache_dir``.
    ``auto`` that picked int8 falls back to float when int8 cannot be built here (no
    calibration photos, say)."""
    chosen = resolve_backend(name, device, checkpoint)
    try:
        return _create(chosen, checkpoint, device, runtime)
    except BackendError as error:
        if name != "auto" or chosen != "openvino-int8":
            raise
        log.warning("auto: %s; running %s in float instead", error, checkpoint.variant)
        return _create(resolve_backend("auto", device), checkpoint, device, runtime)


def _create(
    name: str, checkpoint: Checkpoint, device: torch.device, runtime: RuntimeOptions
) -> Backend:
    if name == "torch":
        from model.backends.eager import EagerBackend

        return EagerBackend(checkpoint, device)
    if name in ("torch-fused", "torch-bf16"):
        from model.backends.fused import FusedBackend

        dtype = torch.float32 if name == "torch-fused" else torch.bfloat16
        return FusedBackend(checkpoint, device, dtype=dtype)
    if name.startswith("openvino"):
        from model.backends.openvino import OpenVinoBackend

        precision = {"openvino": "f32", "openvino-bf16": "bf16", "openvino-int8": "int8"}
        if name in precision:
            return OpenVinoBackend(checkpoint, device, runtime, precision=precision[name])
    raise OptionsError(f"unknown backend {name!r}; available: {', '.join(BACKENDS)}")
