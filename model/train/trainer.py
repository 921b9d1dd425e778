"""The training loop: SGD over augmented WIDER samples, single process or torch.distributed.

Launch with ``python -m model train`` (one process) or ``torchrun --nproc-per-node N
-m model train`` (DDP; NCCL on GPUs, gloo on CPUs). Rank 0 alone writes logs
and checkpoints, atomically: a project checkpoint (safetensors + metadata)
plus a resumable state (optimizer, schedule, RNG) from which ``--resume``
continues exactly.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from tqdm import tqdm

from model.anchors import anchor_grid
from model.checkpoint import Checkpoint, load_into, save_checkpoint
from model.detector import MEAN_RGB, Detector
from model.network import EXTD
from model.train.data import ResumableSampler, WiderFaceTrainSet, collate, load_annotations
from model.train.loss import multibox_loss
from model.train.matching import match
from model.variants import Variant
from model.weights import load_checkpoint

log = logging.getLogger(__name__)

# What must not change between a run and its resumption.
RESUME_KEYS = ("variant", "batch_size", "input_size", "seed", "lr", "momentum", "weight_decay")


@dataclass
class TrainConfig:
    """The recipe's defaults (SGD, lr 1e-3 x0.1 at half and three quarters, batch 16, 640 px)."""

    data_root: str
    out: str = "runs/extd"
    variant: str = "fpn-64-prelu"
    init: str | None = None
    val_split: str | None = None
    iterations: int = 240_000
    batch_size: int = 16
    input_size: int = 640
    lr: float = 1e-3
    momentum: float = 0.9
    weight_decay: float = 5e-4
    lr_steps: list[int] | None = None
    gamma: float = 0.1
    workers: int = 4
    seed: int = 0
    device: str = "auto"
    amp: bool = True
    limit_images: int | None = None
    checkpoint_every: int = 10_000
    eval_every: int = 10_000
    eval_limit: int | None = 200
    log_every: int = 20
    check_sync: bool = False
    publish: str | None = None
    freeze_bn: bool | None = None
    clip_grad_norm: float | None = None

    @property
    def frozen_bn(self) -> bool:
        """Batch norm uses and keeps its running statistics (default: when fine-tuning)."""
        return self.freeze_bn if self.freeze_bn is not None else self.init is not None

    @property
    def steps(self) -> list[int]:
        return self.lr_steps or [self.iterations // 2, self.iterations * 3 // 4]


def initialise(network: nn.Module) -> None:
    """The release's from-scratch init: Xavier-uniform convolutions, zero biases."""
    for module in network.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.xavier_uniform_(module.weight)
            if module.bias is not None:
                nn.init.zeros_(module.bias)


def _atomic_torch_save(payload: dict, path: Path) -> None:
    with tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name}.", delete=False) as tmp:
        torch.save(payload, tmp)
        tmp.flush()
        os.fsync(tmp.fileno())
    os.replace(tmp.name, path)


class Trainer:
    def __init__(self, config: TrainConfig, *, resume: Path | None = None) -> None:
        self.config = config
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        use_cuda = torch.cuda.is_available() and config.device in ("auto", "cuda")
        self.device = torch.device(f"cuda:{local_rank}" if use_cuda else "cpu")
        if self.world > 1 and not dist.is_initialized():
            if use_cuda:
                torch.cuda.set_device(self.device)
            dist.init_process_group("nccl" if use_cuda else "gloo")
        if config.batch_size % self.world:
            raise ValueError(
                f"batch size {config.batch_size} is not divisible by {self.world} processes"
            )
        self.out = Path(config.out)
        if self.is_main:
            self.out.mkdir(parents=True, exist_ok=True)

        # Denormal floats make CPU arithmetic crawl once small gradients appear.
        torch.set_flush_denormal(True)
        torch.manual_seed(config.seed)
        self.variant = Variant.parse(config.variant)
        self.network = EXTD(self.variant)
        if config.init:
            load_into(self.network, load_checkpoint(config.init, self.variant))
        else:
            initialise(self.network)
        self.network.to(self.device).train()
        if config.frozen_bn:
            # The reused stage shares its batch norms across six scales, so a few
            # batches of fresh statistics would overwrite what the checkpoint learned.
            for module in self.network.modules():
                if isinstance(module, nn.BatchNorm2d):
                    module.eval()
        self.model: nn.Module = (
            DistributedDataParallel(
                self.network, device_ids=[self.device.index] if use_cuda else None
            )
            if self.world > 1
            else self.network
        )
        self.optimizer = torch.optim.SGD(
            self.network.parameters(),
            lr=config.lr,
            momentum=config.momentum,
            weight_decay=config.weight_decay,
        )
        self.iteration = 0
        self.last_ap: dict[str, float] | None = None
        if resume:
            self._restore(resume)

        annotations, self.skipped_boxes = load_annotations(
            config.data_root, limit=config.limit_images
        )
        if not annotations:
            raise ValueError(f"{config.data_root}: no training images")
        self.dataset = WiderFaceTrainSet(annotations, size=config.input_size, seed=config.seed)
        self.anchors = anchor_grid(config.input_size, config.input_size, device=self.device)
        self.mean = torch.tensor(MEAN_RGB, device=self.device).view(1, 3, 1, 1)
        self.amp = config.amp and self.device.type == "cuda"

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def learning_rate(self) -> float:
        """Step schedule: ``lr * gamma ** (milestones passed)``, a function of the iteration."""
        passed = sum(self.iteration >= step for step in self.config.steps)
        return self.config.lr * self.config.gamma**passed

    def _batches(self):
        per_rank = self.config.batch_size // self.world
        sampler = ResumableSampler(
            len(self.dataset),
            seed=self.config.seed,
            rank=self.rank,
            world=self.world,
            start=self.iteration * self.config.batch_size,
        )
        loader = DataLoader(
            self.dataset,
            batch_size=per_rank,
            sampler=sampler,
            num_workers=self.config.workers,
            collate_fn=collate,
            pin_memory=self.device.type == "cuda",
            persistent_workers=self.config.workers > 0,
            prefetch_factor=4 if self.config.workers > 0 else None,
        )
        return iter(loader)

    def step(self, images: torch.Tensor, faces: list[torch.Tensor]) -> dict[str, float]:
        x = images.to(self.device, non_blocking=True).float() - self.mean
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.amp):
            offsets, logits = self.model(x)
        targets = match(faces, self.anchors)
        loss = multibox_loss(offsets.float(), logits.float(), targets)
        for group in self.optimizer.param_groups:
            group["lr"] = self.learning_rate
        self.optimizer.zero_grad(set_to_none=True)
        loss.total.backward()
        if self.config.clip_grad_norm:
            nn.utils.clip_grad_norm_(self.network.parameters(), self.config.clip_grad_norm)
        self.optimizer.step()
        self.iteration += 1
        return {
            "loss": loss.total.item(),
            "loss_box": loss.box.item(),
            "loss_class": loss.classification.item(),
            "positives": loss.positives,
        }

    def _parameters_in_sync(self) -> bool:
        digest = torch.stack([p.detach().double().sum() for p in self.network.parameters()])
        gathered = [torch.empty_like(digest) for _ in range(self.world)]
        dist.all_gather(gathered, digest)
        return all(torch.equal(g, gathered[0]) for g in gathered)

    def train(self) -> Path:
        """Run to ``config.iterations``; returns the final project checkpoint."""
        batches = self._batches()
        started, last_time, last_iteration = (
            time.perf_counter(),
            time.perf_counter(),
            self.iteration,
        )
        final = self.out / f"{self.variant.name}-it{self.config.iterations}.safetensors"
        bar = tqdm(
            total=self.config.iterations,
            initial=self.iteration,
            disable=None if self.is_main else True,
            unit="it",
            desc="train",
        )
        while self.iteration < self.config.iterations:
            images, faces = next(batches)
            parts = self.step(images, faces)
            bar.update(1)
            if self.config.check_sync and self.world > 1:
                parts["in_sync"] = self._parameters_in_sync()
                if not parts["in_sync"]:
                    raise RuntimeError(f"parameters diverged across ranks at {self.iteration}")
            done = self.iteration == self.config.iterations
            if self.iteration % self.config.log_every == 0 or done or self.config.check_sync:
                now = time.perf_counter()
                images_per_s = (
                    (self.iteration - last_iteration) * self.config.batch_size / (now - last_time)
                )
                last_time, last_iteration = now, self.iteration
                bar.set_postfix(loss=f"{parts['loss']:.3f}")
                self._log(
                    {
                        **parts,
                        "lr": self.learning_rate,
                        "images_per_s": round(images_per_s, 2),
                        "elapsed_s": round(now - started, 2),
                    }
                )
            if self.config.val_split and (self.iteration % self.config.eval_every == 0 or done):
                self._evaluate()
            if self.iteration % self.config.checkpoint_every == 0 or done:
                self._save()
        bar.close()
        if self.world > 1:
            dist.barrier()
        return final

    def _log(self, record: dict) -> None:
        if not self.is_main:
            return
        line = {"iteration": self.iteration, "rank": self.rank, "world": self.world, **record}
        with open(self.out / "log.jsonl", "a") as handle:
            handle.write(json.dumps(line) + "\n")

    def _evaluate(self) -> None:
        if self.is_main:
            from model.eval import evaluate, load_split, predict_split

            split = load_split(self.config.val_split).subset(self.config.eval_limit)
            detector = Detector(Checkpoint.from_network(self.network), device=self.device)
            result = evaluate(predict_split(detector, split, progress=False), split)
            self.last_ap = {k: round(v, 4) for k, v in result.ap.items()}
            self._log({"val_ap": self.last_ap, "val_images": result.images})
        if self.world > 1:
            dist.barrier()

    def _save(self) -> None:
        if not self.is_main:
            return
        training = {
            "iteration": self.iteration,
            "config": asdict(self.config),
            "val_ap": self.last_ap,
            "world_size": self.world,
            "written_by_rank": self.rank,
            "skipped_boxes": self.skipped_boxes,
        }
        checkpoint = Checkpoint.from_network(
            self.network, source="python -m model train", training=training
        )
        save_checkpoint(
            checkpoint, self.out / f"{self.variant.name}-it{self.iteration}.safetensors"
        )
        state = {
            "iteration": self.iteration,
            "config": asdict(self.config),
            "model": self.network.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "rng": {"torch": torch.get_rng_state()}
            | (
                {"cuda": torch.cuda.get_rng_state(self.device)}
                if self.device.type == "cuda"
                else {}
            ),
            "val_ap": self.last_ap,
        }
        _atomic_torch_save(state, self.out / f"state-it{self.iteration}.pt")

    def _restore(self, path: Path) -> None:
        state = torch.load(path, map_location=self.device, weights_only=True)
        saved = state["config"]
        changed = [k for k in RESUME_KEYS if saved.get(k) != getattr(self.config, k)]
        if changed:
            raise ValueError(
                f"cannot resume {path}: {', '.join(changed)} differ from the saved run"
            )
        self.network.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["rng"]["torch"].cpu())
        if "cuda" in state["rng"] and self.device.type == "cuda":
            torch.cuda.set_rng_state(state["rng"]["cuda"].cpu(), self.device)
        self.iteration = state["iteration"]
        self.last_ap = state.get("val_ap")
        log.info("resumed from %s at iteration %d", path, self.iteration)
