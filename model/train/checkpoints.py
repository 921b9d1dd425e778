"""What a training run writes and reads back: checkpoints, resumable states, the publish copy.

Every file is written atomically (a temporary file in the same folder, then
a rename), so a reader (a watching service, a resuming run) never sees half
of one.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from model.checkpoint import Checkpoint, save_checkpoint
from model.errors import OptionsError
from model.files import atomic_path
from model.train.config import RESUME_KEYS, TrainConfig

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Checkpointer:
    """Writes a run's checkpoints into its folder, and each also to ``publish`` when set."""

    config: TrainConfig
    device: torch.device

    @property
    def folder(self) -> Path:
        return Path(self.config.out)

    def checkpoint_path(self, iteration: int) -> Path:
        return self.folder / f"{self.config.variant}-it{iteration}.safetensors"

    def save(
        self,
        iteration: int,
        network: nn.Module,
        optimizer: torch.optim.Optimizer,
        training: dict[str, Any],
    ) -> Path:
        """The project checkpoint (loadable by the service as is) and the resumable state."""
        config = asdict(self.config)
        checkpoint = Checkpoint.from_network(
            network,
            source="python -m model train",
            training={"iteration": iteration, "config": config, **training},
        )
        path = save_checkpoint(checkpoint, self.checkpoint_path(iteration))
        if self.config.publish:
            save_checkpoint(checkpoint, self.config.publish)
            log.info("published iteration %d to %s", iteration, self.config.publish)
        state = {
            "iteration": iteration,
            "config": config,
            "model": network.state_dict(),
            "optimizer": optimizer.state_dict(),
            "rng": {"torch": torch.get_rng_state()}
            | (
                {"cuda": torch.cuda.get_rng_state(self.device)}
                if self.device.type == "cuda"
                else {}
            ),
            "val_ap": training.get("val_ap"),
        }
        with atomic_path(self.folder / f"state-it{iteration}.pt") as scratch:
            torch.save(state, scratch)
        return path


@dataclass(frozen=True)
class Restored:
    iteration: int
    val_ap: dict[str, float] | None


def restore(
    path: Path,
    config: TrainConfig,
    network: nn.Module,
    optimizer: torch.optim.Optimizer,
    device: torch.device,
) -> Restored:
    """Load a resumable state into ``network`` and ``optimizer``, RNG included.

    Refuses a state whose recipe (``RESUME_KEYS``) differs from ``config``.
    """
    state = torch.load(path, map_location=device, weights_only=True)
    saved = state["config"]
    changed = [k for k in RESUME_KEYS if saved.get(k) != getattr(config, k)]
    if changed:
        raise OptionsError(f"cannot resume {path}: {', '.join(changed)} differ from the saved run")
    network.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    torch.set_rng_state(state["rng"]["torch"].cpu())
    if "cuda" in state["rng"] and device.type == "cuda":
        torch.cuda.set_rng_state(state["rng"]["cuda"].cpu(), device)
    log.info("resumed from %s at iteration %d", path, state["iteration"])
    return Restored(state["iteration"], state.get("val_ap"))
