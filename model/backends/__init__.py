"""Inference backends: what runs the network's forward pass for the Detector.

``torch`` is the fp32 eager reference path and always works. Other
backends must give the same detections (fp32) or the same accuracy
(reduced precision) and are chosen by name.
"""

from __future__ import annotations

from typing import Protocol

import torch
from torch import Tensor

from model.backends.eager import EagerBackend
from model.checkpoint import Checkpoint


class Backend(Protocol):
    """Maps a normalised ``(N, 3, H, W)`` float batch to ``(offsets, logits)``."""

    name: str
    device: torch.device

    def __call__(self, batch: Tensor) -> tuple[Tensor, Tensor]: ...


BACKENDS = ("torch",)


def create_backend(name: str, checkpoint: Checkpoint, device: torch.device) -> Backend:
    if name == "torch":
        return EagerBackend(checkpoint, device)
    raise ValueError(f"unknown backend {name!r}; available: {', '.join(BACKENDS)}")
