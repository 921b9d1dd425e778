"""Inference backends: what runs the network's forward pass for the Detector.

``torch`` is the fp32 eager reference path and always works. The others
must give the same detections (fp32) or the same accuracy (reduced
precision: hard AP on the WIDER dev split within 0.3 points of fp32).
``auto`` picks the fastest that does on this machine: ``torch-bf16`` on a
GPU; on a CPU ``openvino-bf16`` where the CPU has bf16 instructions, else
``openvino``, else ``torch-fused``. ``openvino-int8`` is not among them: it
stays within 0.3 points for EXTD-64 but loses 0.75 for EXTD-32 (README).
"""

from __future__ import annotations

import importlib.util
from typing import Protocol

import torch
from torch import Tensor

from model.checkpoint import Checkpoint
from model.errors import OptionsError
from model.options import BACKENDS, RuntimeOptions


class Backend(Protocol):
    """Maps a normalised ``(N, 3, H, W)`` float batch to float32 ``(offsets, logits)``."""

    name: str
    device: torch.device

    def __call__(self, batch: Tensor) -> tuple[Tensor, Tensor]: ...

    def release_memory(self) -> None:
        """Free the buffers kept for the largest shapes seen (they come back on demand)."""


def resolve_backend(name: str, device: torch.device) -> str:
    """The concrete backend ``auto`` stands for on ``device``."""
    if name != "auto":
        return name
    if device.type == "cuda":
        return "torch-bf16"
    if importlib.util.find_spec("openvino") is None:
        return "torch-fused"
    from model.backends.openvino import supports_bf16

    return "openvino-bf16" if supports_bf16() else "openvino"


def create_backend(
    name: str, checkpoint: Checkpoint, device: torch.device, runtime: RuntimeOptions
) -> Backend:
    """The backend ``name`` over ``checkpoint``; converted models go to ``runtime.cache_dir``."""
    name = resolve_backend(name, device)
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
