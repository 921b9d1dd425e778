"""The reference backend: the network as built, fp32, PyTorch eager."""

from __future__ import annotations

import torch
from torch import Tensor

from model.checkpoint import Checkpoint


class EagerBackend:
    name = "torch"

    def __init__(self, checkpoint: Checkpoint, device: torch.device) -> None:
        self.device = device
        if device.type == "cuda":
            # fp32 means fp32: no TF32 convolutions on Ampere and later.
            torch.backends.cudnn.allow_tf32 = False
        self.network = checkpoint.build().to(device)

    def release_memory(self) -> None:
        """Nothing is kept: PyTorch frees each pass's activations (the heap is trimmed apart)."""

    @torch.inference_mode()
    def __call__(self, batch: Tensor) -> tuple[Tensor, Tensor]:
        return self.network(batch.to(self.device, torch.float32))
