"""``torch-compiled``: the folded, channels-last network through ``torch.compile``.

The GPU candidate beside ``torch-bf16``: inductor fuses the neighbours of the
depthwise and pointwise convolutions (activations, adds, the upsampling) into
fewer kernels, which is what this memory-bound network needs. bf16 on CUDA
(``reduce-overhead``: CUDA graphs as well), fp32 on the CPU (a dry run: on a
CPU the OpenVINO backends are the fast path). No ``max-autotune``: minutes of
tuning per shape. Each input shape compiles once, batches padded to powers of
two so a few shapes serve every batch size of a size bucket. The entry points
keep inductor's artefacts under ``EXTD_CACHE_DIR`` (:func:`compile_cache`),
where inductor keys them by graph (the variant), input shape, device and
library versions, so a restart reuses them.
"""

from __future__ import annotations

import threading
from pathlib import Path

import torch
from torch import Tensor

from model.backends.fused import fold_batchnorm
from model.checkpoint import Checkpoint
from model.options import RuntimeOptions

# The variable torch reads for the folder of its compiled artefacts.
INDUCTOR_CACHE_VARIABLE = "TORCHINDUCTOR_CACHE_DIR"


def compile_cache(runtime: RuntimeOptions) -> Path:
    """Where the entry points point :data:`INDUCTOR_CACHE_VARIABLE`."""
    return runtime.cache_dir / "compiled"


class CompiledBackend:
    name = "torch-compiled"

    def __init__(self, checkpoint: Checkpoint, device: torch.device) -> None:
        self.device = device
        self.dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
        network = fold_batchnorm(checkpoint.build()).to(
            device=device, dtype=self.dtype, memory_format=torch.channels_last
        )
        mode = "reduce-overhead" if device.type == "cuda" else "default"
        self.network = torch.compile(network, mode=mode, dynamic=False)
        self._lock = threading.Lock()

    def release_memory(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.empty_cache()

    @torch.inference_mode()
    def __call__(self, batch: Tensor) -> tuple[Tensor, Tensor]:
        count = batch.shape[0]
        padded = 1 << (count - 1).bit_length()
        batch = batch.to(self.device, self.dtype)
        if padded != count:
            batch = torch.cat((batch, batch.new_zeros(padded - count, *batch.shape[1:])))
        with self._lock:
            offsets, logits = self.network(batch.contiguous(memory_format=torch.channels_last))
            # Outputs may live in a CUDA graph's memory, which the next call overwrites.
            return (
                offsets[:count].to(torch.float32, copy=True),
                logits[:count].to(torch.float32, copy=True),
            )
