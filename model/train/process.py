"""Process setup for training: rank, device, process group, seeding, and the DDP wrapper.

Under ``torchrun`` the process group is joined through torch's own
``env://`` rendezvous; a plain ``python -m model train`` is a world of one.
"""

from __future__ import annotations

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
    """Join the process group when launched by ``torchrun`` (NCCL on GPUs, gloo on CPUs) and
    seed torch."""
    use_cuda = torch.cuda.is_available() and device in ("auto", "cuda")
    local_rank = dist.get_node_local_rank(fallback_rank=0)
    if dist.is_torchelastic_launched() and not dist.is_initialized():
        if use_cuda:
            torch.cuda.set_device(local_rank)
        dist.init_process_group("nccl" if use_cuda else "gloo")
    launched = dist.is_initialized()
    rank = dist.get_rank() if launched else 0
    world = dist.get_world_size() if launched else 1
    process = TrainingProcess(
        rank, world, torch.device(f"cuda:{local_rank}" if use_cuda else "cpu")
    )
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
