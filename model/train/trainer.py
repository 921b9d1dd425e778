"""The training loop: SGD over augmented WIDER samples, single process or torch.distributed.

Launch with ``python -m model train`` (one process) or ``torchrun --nproc-per-node N
-m model train`` (DDP; NCCL on GPUs, gloo on CPUs). The pieces: process setup
(``process``), one step (:meth:`Trainer.step`), validation
(:func:`validate`), checkpoints (``checkpoints``); :meth:`Trainer.train`
only sequences them.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from model.anchors import anchor_grid
from model.checkpoint import Checkpoint, load_into
from model.conventions import MEAN_RGB
from model.detector import Detector
from model.errors import OptionsError
from model.eval import EvalResult, evaluate, load_split, predict_split
from model.network import EXTD
from model.options import RuntimeOptions
from model.train.checkpoints import Checkpointer, restore
from model.train.config import TrainConfig
from model.train.data import ResumableSampler, WiderFaceTrainSet, collate, load_annotations
from model.train.loss import multibox_loss
from model.train.matching import match
from model.train.process import TrainingProcess, parameters_in_sync, setup_process
from model.variants import Variant
from model.weights import load_checkpoint


def initialise(network: nn.Module) -> None:
    """The release's from-scratch init: Xavier-uniform convolutions, zero biases."""
    for module in network.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.xavier_uniform_(module.weight)
            if module.bias is not None:
                nn.init.zeros_(module.bias)


def build_network(
    config: TrainConfig, device: torch.device, runtime: RuntimeOptions = RuntimeOptions()
) -> EXTD:
    """The network in train mode: fresh, or the ``init`` checkpoint's weights (a registry
    name is pulled into ``runtime.weights_folder``)."""
    variant = Variant.parse(config.variant)
    network = EXTD(variant)
    if config.init:
        checkpoint = load_checkpoint(config.init, variant, runtime=runtime)
        load_into(network, checkpoint)
    else:
        initialise(network)
    network.to(device).train()
    if config.frozen_bn:
        # The reused stage shares its batch norms across six scales, so a few
        # batches of fresh statistics would overwrite what the checkpoint learned.
        for module in network.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.eval()
    return network


def validate(network: EXTD, split_folder: str, limit: int | None) -> EvalResult:
    """WIDER AP of the network as it is now, with the exact fp32 backend."""
    split = load_split(split_folder).subset(limit)
    device = next(network.parameters()).device
    detector = Detector(Checkpoint.from_network(network), device=device, backend="torch")
    return evaluate(predict_split(detector, split, progress=False), split)


@dataclass
class Throughput:
    """Images per second since the last reading."""

    batch_size: int
    iteration: int
    since: float = field(default_factory=time.perf_counter)

    def read(self, iteration: int) -> float:
        now = time.perf_counter()
        rate = (iteration - self.iteration) * self.batch_size / max(now - self.since, 1e-9)
        self.iteration, self.since = iteration, now
        return round(rate, 2)


class Trainer:
    def __init__(
        self,
        config: TrainConfig,
        *,
        resume: Path | None = None,
        runtime: RuntimeOptions = RuntimeOptions(),
    ) -> None:
        self.config = config
        self.process: TrainingProcess = setup_process(config.device, seed=config.seed)
        if config.batch_size % self.process.world:
            raise OptionsError(
                f"batch size {config.batch_size} is not divisible by {self.process.world} processes"
            )
        self.device = self.process.device
        self.network = build_network(config, self.device, runtime)
        self.model = self.process.wrap(self.network)
        self.optimizer = torch.optim.SGD(
            self.network.parameters(),
            lr=config.lr,
            momentum=config.momentum,
            weight_decay=config.weight_decay,
        )
        self.checkpointer = Checkpointer(config, self.device)
        self.iteration = 0
        self.last_ap: dict[str, float] | None = None
        if resume:
            restored = restore(resume, config, self.network, self.optimizer, self.device)
            self.iteration, self.last_ap = restored.iteration, restored.val_ap
        if self.is_main:
            Path(config.out).mkdir(parents=True, exist_ok=True)

        annotations, self.skipped_boxes = load_annotations(
            config.data_root, limit=config.limit_images
        )
        if not annotations:
            raise OptionsError(f"{config.data_root}: no training images")
        self.dataset = WiderFaceTrainSet(annotations, size=config.input_size, seed=config.seed)
        self.anchors = anchor_grid(config.input_size, config.input_size, device=self.device)
        self.mean = torch.tensor(MEAN_RGB, device=self.device).view(1, 3, 1, 1)
        self.amp = config.amp and self.device.type == "cuda"

    @property
    def is_main(self) -> bool:
        return self.process.is_main

    @property
    def learning_rate(self) -> float:
        """Step schedule: ``lr * gamma ** (milestones passed)``, a function of the iteration."""
        passed = sum(self.iteration >= step for step in self.config.steps)
        return self.config.lr * self.config.gamma**passed

    def _batches(self) -> Iterator[tuple[torch.Tensor, list[torch.Tensor]]]:
        """This rank's share of the sample stream, from where the run stands."""
        sampler = ResumableSampler(
            len(self.dataset),
            seed=self.config.seed,
            rank=self.process.rank,
            world=self.process.world,
            start=self.iteration * self.config.batch_size,
        )
        workers = self.config.workers
        loader = DataLoader(
            self.dataset,
            batch_size=self.config.batch_size // self.process.world,
            sampler=sampler,
            num_workers=workers,
            collate_fn=collate,
            pin_memory=self.device.type == "cuda",
            persistent_workers=workers > 0,
            prefetch_factor=4 if workers > 0 else None,
        )
        return iter(loader)

    def step(self, images: torch.Tensor, faces: list[torch.Tensor]) -> dict[str, float]:
        """One SGD step on a batch; returns the loss parts."""
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

    def _due(self, every: int) -> bool:
        return self.iteration % every == 0 or self.iteration == self.config.iterations

    def train(self) -> Path:
        """Run to ``config.iterations``; returns the final project checkpoint."""
        config = self.config
        batches = self._batches()
        started = time.perf_counter()
        throughput = Throughput(config.batch_size, self.iteration)
        bar = tqdm(
            total=config.iterations,
            initial=self.iteration,
            disable=None if self.is_main else True,
            unit="it",
            desc="train",
        )
        while self.iteration < config.iterations:
            parts = self.step(*next(batches))
            bar.update(1)
            if config.check_sync and self.process.distributed:
                parts["in_sync"] = parameters_in_sync(self.network)
                if not parts["in_sync"]:
                    raise RuntimeError(f"parameters diverged across ranks at {self.iteration}")
            if self._due(config.log_every) or config.check_sync:
                bar.set_postfix(loss=f"{parts['loss']:.3f}")
                self._log(
                    parts
                    | {
                        "lr": self.learning_rate,
                        "images_per_s": throughput.read(self.iteration),
                        "elapsed_s": round(time.perf_counter() - started, 2),
                    }
                )
            if config.val_split and self._due(config.eval_every):
                self._validate()
            if self._due(config.checkpoint_every):
                self._save()
        bar.close()
        self.process.barrier()
        return self.checkpointer.checkpoint_path(config.iterations)

    def _log(self, record: dict) -> None:
        if not self.is_main:
            return
        line = {
            "iteration": self.iteration,
            "rank": self.process.rank,
            "world": self.process.world,
            **record,
        }
        with open(Path(self.config.out) / "log.jsonl", "a") as handle:
            handle.write(json.dumps(line) + "\n")

    def _validate(self) -> None:
        if self.is_main:
            result = validate(self.network, self.config.val_split, self.config.eval_limit)
            self.last_ap = {k: round(v, 4) for k, v in result.ap.items()}
            self._log({"val_ap": self.last_ap, "val_images": result.images})
        self.process.barrier()

    def _save(self) -> None:
        if not self.is_main:
            return
        training = {
            "val_ap": self.last_ap,
            "world_size": self.process.world,
            "written_by_rank": self.process.rank,
            "skipped_boxes": self.skipped_boxes,
        }
        self.checkpointer.save(self.iteration, self.network, self.optimizer, training)
