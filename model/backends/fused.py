"""PyTorch with batch norm folded into the convolutions and channels-last memory.

In fp32 it gives the reference detections. On CUDA each input shape (batch
padded to a power of two) is captured once as a CUDA graph, so a batch costs
one launch.
"""

from __future__ import annotations

import copy
import threading
from collections import Counter

import torch
from torch import Tensor, nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from model.checkpoint import Checkpoint
from model.network import EXTD, ConvBNAct, ReusedBatchNorm, TopDownBlock

MAX_GRAPHS = 64
# A shape is captured as a graph once it is seen this often; one-off shapes run eagerly.
CAPTURE_AFTER = 3


def _single_statistics(norm: nn.BatchNorm2d) -> nn.BatchNorm2d | None:
    """The norm as a plain BatchNorm2d, or None when its uses have different statistics."""
    if not isinstance(norm, ReusedBatchNorm):
        return norm
    mean, var = norm.running_mean, norm.running_var
    if not (
        torch.equal(mean, mean[:1].expand_as(mean)) and torch.equal(var, var[:1].expand_as(var))
    ):
        return None
    plain = nn.BatchNorm2d(norm.num_features, eps=norm.eps).eval()
    plain.load_state_dict(
        {"weight": norm.weight, "bias": norm.bias, "running_mean": mean[0], "running_var": var[0]},
        strict=False,
    )
    return plain


def fold_batchnorm(network: EXTD) -> EXTD:
    """A copy of an eval-mode network whose batch norms live inside the convolutions.

    A stage norm whose uses keep different statistics (a network trained here)
    cannot be folded into the one shared convolution, and stays as it is.
    """
    folded = copy.deepcopy(network).eval()
    for module in folded.modules():
        if isinstance(module, ConvBNAct):
            norm = _single_statistics(module.bn)
            if norm is not None:
                module.conv = fuse_conv_bn_eval(module.conv, norm)
                module.bn = nn.Identity()
        elif isinstance(module, TopDownBlock):
            module.pointwise = fuse_conv_bn_eval(module.pointwise, module.bn)
            module.bn = nn.Identity()
    return folded


class FusedBackend:
    """``torch-fused`` (fp32) and ``torch-bf16``: folded BN, channels-last, CUDA graphs on GPU."""

    def __init__(self, checkpoint: Checkpoint, device: torch.device, *, dtype: torch.dtype) -> None:
        self.name = "torch-fused" if dtype == torch.float32 else "torch-bf16"
        self.device = device
        self.dtype = dtype
        network = fold_batchnorm(checkpoint.build())
        self.network = network.to(device=device, dtype=dtype, memory_format=torch.channels_last)
        self.use_graphs = device.type == "cuda"
        if self.use_graphs:
            # Let cuDNN time its algorithms per shape: its default picks are slow for
            # channels-last depthwise convolutions (20x in bf16 on an H200).
            torch.backends.cudnn.benchmark = True
        self._graphs: dict[
            tuple[int, ...], tuple[torch.cuda.CUDAGraph, Tensor, tuple[Tensor, Tensor]]
        ] = {}
        self._seen: Counter[tuple[int, ...]] = Counter()
        self._pool = torch.cuda.graph_pool_handle() if self.use_graphs else None
        self._lock = threading.Lock()

    def release_memory(self) -> None:
        """Drop the captured CUDA graphs and the cached GPU blocks; CPU runs keep nothing."""
        if self.use_graphs:
            with self._lock:
                self._graphs.clear()
            torch.cuda.empty_cache()

    def _eager(self, batch: Tensor) -> tuple[Tensor, Tensor]:
        return self.network(batch)

    def _capture(self, batch: Tensor) -> tuple[torch.cuda.CUDAGraph, Tensor, tuple[Tensor, Tensor]]:
        static_input = batch.clone()
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(2):  # warm up cuDNN's algorithm choice outside the graph
                self._eager(static_input)
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=self._pool):
            static_output = self._eager(static_input)
        return graph, static_input, static_output

    @torch.inference_mode()
    def __call__(self, batch: Tensor) -> tuple[Tensor, Tensor]:
        batch = batch.to(self.device, self.dtype).contiguous(memory_format=torch.channels_last)
        if not self.use_graphs:
            offsets, logits = self._eager(batch)
            return offsets.float(), logits.float()
        count = batch.shape[0]
        # Batches are padded to a power of two: a few graphs serve every batch size.
        padded = 1 << (count - 1).bit_length()
        if padded != count:
            batch = torch.cat((batch, batch.new_zeros(padded - count, *batch.shape[1:])))
        with self._lock:
            key = tuple(batch.shape)
            if key not in self._graphs:
                self._seen[key] += 1
                if self._seen[key] < CAPTURE_AFTER:
                    offsets, logits = self._eager(batch)
                    return offsets[:count].float(), logits[:count].float()
                if len(self._graphs) >= MAX_GRAPHS:
                    self._graphs.pop(next(iter(self._graphs)))
                self._graphs[key] = self._capture(batch)
            graph, static_input, (offsets, logits) = self._graphs[key]
            static_input.copy_(batch)
            graph.replay()
            # The graph's outputs are overwritten by the next replay: hand out copies.
            return (
                offsets[:count].to(torch.float32, copy=True),
                logits[:count].to(torch.float32, copy=True),
            )
