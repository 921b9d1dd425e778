"""Process setup for training: rank, device, process group, seeding, and the DDP wrapper.

``torchrun`` sets ``WORLD_SIZE``, ``RANK`` and ``LOCAL_RANK``; a plain
``python -m model train`` is a world of one.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel


@dataclass(frozen=True)
class TrainingProcess:
    """This process's place in the run."""

    rank: int
    world: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        """Rank 0 alone writes logs and checkpoints."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world > 1

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()

    def wrap(self, network: nn.Module) -> nn.Module:
        """The network as the training step calls it: under DDP when there are several ranks."""
        if not self.distributed:
            return network
        devices = [self.device.index] if self.device.type == "cuda" else None
        return DistributedDataParallel(network, device_ids=devices)


def setup_process(device: str, *, seed: int) -> TrainingProcess:
    """Join the process group (NCCL on GPUs, gloo on CPUs) and seed torch."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = torch.cuda.is_available() and device in ("auto", "cuda")
    process = TrainingProcess(
        rank, world, torch.device(f"cuda:{local_rank}" if use_cuda else "cpu")
    )
    if process.distributed and not dist.is_initialized():
        if use_cuda:
            torch.cuda.set_device(process.device)
        dist.init_process_group("nccl" if use_cuda else "gloo")
    # Denormal floats make CPU arithmetic crawl once small gradients appear.
    torch.set_flush_denormal(True)
    torch.manual_seed(seed)
    return process


def parameters_in_sync(network: nn.Module) -> bool:
    """Whether every rank holds the same parameters (a per-tensor sum compared across ranks)."""
    digest = torch.stack([p.detach().double().sum() for p in network.parameters()])
    gathered = [torch.empty_like(digest) for _ in range(dist.get_world_size())]
    dist.all_gather(gathered, digest)
    return all(torch.equal(g, gathered[0]) for g in gathered)
