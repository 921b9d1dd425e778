"""Inference backends: what runs the network's forward pass for the Detector.

``torch`` is the fp32 eager reference path and always works. The others
must give the same detections (fp32) or the same accuracy (reduced
precision). ``auto`` picks the fastest exact one on a CPU (``openvino``)
and bf16 on a GPU, where it is about 1.4x faster.
"""

from __future__ import annotations

import importlib.util
from typing import Protocol

import torch
from torch import Tensor

from model.checkpoint import Checkpoint
from model.options import BACKENDS


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
    if importlib.util.find_spec("openvino") is not None:
        return "openvino"
    return "torch-fused"


def create_backend(name: str, checkpoint: Checkpoint, device: torch.device) -> Backend:
    name = resolve_backend(name, device)
    if name == "torch":
        from model.backends.eager import EagerBackend

        return EagerBackend(checkpoint, device)
    if name in ("torch-fused", "torch-bf16"):
        from model.backends.fused import FusedBackend

        dtype = torch.float32 if name == "torch-fused" else torch.bfloat16
        return FusedBackend(checkpoint, device, dtype=dtype)
    if name in ("openvino", "openvino-bf16"):
        from model.backends.openvino import OpenVinoBackend

        return OpenVinoBackend(
            checkpoint, device, precision="bf16" if name == "openvino-bf16" else "f32"
        )
    raise ValueError(f"unknown backend {name!r}; available: {', '.join(BACKENDS)}")
