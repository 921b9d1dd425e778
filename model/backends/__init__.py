"""Inference backends: what runs the network's forward pass for the Detector.

``torch`` is the fp32 eager reference path and always works. The others
must give the same detections (fp32) or the same accuracy (reduced
precision: hard AP on the WIDER dev split within 0.3 points of fp32).
``auto`` picks, per checkpoint, the fastest that does on this machine:
``torch-bf16`` on a GPU; on a CPU the first of the backends measured fastest
on its instruction set (:data:`model.backends.cpu.FASTEST_FIRST`) that keeps
the accuracy: ``openvino-int8`` for a checkpoint whose int8 loss was measured
at 0.3 points or less (:func:`model.weights.int8_hard_ap_loss`), then
``openvino-bf16`` where the CPU has bf16 instructions, then ``openvino``;
``torch-fused`` without OpenVINO.
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
    return next(b for b in cpu_backends() if keeps_accuracy(b, checkpoint))


def cpu_backends() -> tuple[str, ...]:
    """The OpenVINO backends fastest first on this CPU (by OpenVINO's own report of bf16
    where the instruction set cannot be read)."""
    from model.backends.cpu import FASTEST_FIRST, instruction_set
    from model.backends.openvino import supports_bf16

    isa = instruction_set()
    if isa is not None:
        return FASTEST_FIRST[isa]
    return ("openvino-int8", "openvino-bf16" if supports_bf16() else "openvino", "openvino")


def keeps_accuracy(name: str, checkpoint: Checkpoint | None) -> bool:
    """Whether ``name`` stays within :data:`AUTO_TOLERANCE` of fp32 on ``checkpoint``: int8
    where that was measured (and NNCF is here to build it), bf16 and fp32 always (bf16 lost
    0.16 points at most on the released checkpoints, docs/performance.md)."""
    if name != "openvino-int8":
        return True
    loss = int8_hard_ap_loss(checkpoint) if checkpoint is not None else None
    return loss is not None and loss <= AUTO_TOLERANCE and bool(importlib.util.find_spec("nncf"))


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
    if name == "torch-compiled":
        from model.backends.compiled import CompiledBackend

        return CompiledBackend(checkpoint, device)
    if name.startswith("openvino"):
        from model.backends.openvino import OpenVinoBackend

        precision = {"openvino": "f32", "openvino-bf16": "bf16", "openvino-int8": "int8"}
        if name in precision:
            return OpenVinoBackend(checkpoint, device, runtime, precision=precision[name])
    raise OptionsError(f"unknown backend {name!r}; available: {', '.join(BACKENDS)}")
