"""The training recipe as one typed object; ``python -m model train`` derives its flags from it."""

from __future__ import annotations

from dataclasses import dataclass, field

from model.options import described

# What must not change between a run and its resumption.
RESUME_KEYS = ("variant", "batch_size", "input_size", "seed", "lr", "momentum", "weight_decay")


@dataclass
class TrainConfig:
    """The EXTD recipe: SGD, lr 1e-3 x0.1 at half and three quarters, batch 16, 640 px."""

    data_root: str = field(metadata={"help": "WIDER train download, or a split folder"})
    out: str = described("runs/extd", "folder for checkpoints and log.jsonl")
    variant: str = described("fpn-64-prelu", "network layout, e.g. fpn-64-prelu, ssd-32-relu")
    init: str | None = described(
        None, "start from this checkpoint (fine-tune) instead of from scratch"
    )
    val_split: str | None = described(None, "split folder evaluated every --eval-every iterations")
    iterations: int = described(240_000, "iterations to train")
    batch_size: int = described(16, "images per iteration, over all processes")
    input_size: int = described(640, "side of the square training samples")
    lr: float = described(1e-3, "SGD learning rate")
    momentum: float = described(0.9, "SGD momentum")
    weight_decay: float = described(5e-4, "SGD weight decay")
    lr_steps: list[int] | None = described(
        None, "iterations where the lr drops by --gamma", unset="1/2 and 3/4 of --iterations"
    )
    gamma: float = described(0.1, "lr factor at each of --lr-steps")
    workers: int = described(4, "DataLoader worker processes")
    seed: int = described(0, "seed of the initialisation and of every augmentation")
    device: str = described("auto", "auto = CUDA when available", choices=("auto", "cpu", "cuda"))
    amp: bool = described(True, "bf16 autocast on CUDA")
    limit_images: int | None = described(None, "train on N images (every k-th)", unset="all")
    checkpoint_every: int = described(10_000, "write a checkpoint every N iterations")
    eval_every: int = described(10_000, "evaluate on --val-split every N iterations")
    eval_limit: int | None = described(200, "images of --val-split evaluated (every k-th)")
    log_every: int = described(20, "append to log.jsonl every N iterations")
    check_sync: bool = described(False, "verify after every step that all ranks agree")
    publish: str | None = described(
        None, "also write each checkpoint to this file, atomically (e.g. into a weights folder)"
    )
    freeze_bn: bool | None = described(
        None,
        "keep batch-norm statistics fixed",
        unset="on with --init, off from scratch",
    )
    clip_grad_norm: float | None = described(
        None, "clip the gradient norm (allows larger learning rates)", unset="no clipping"
    )

    @property
    def frozen_bn(self) -> bool:
        """Batch norm uses and keeps its running statistics (default: when fine-tuning)."""
        return self.freeze_bn if self.freeze_bn is not None else self.init is not None

    @property
    def steps(self) -> list[int]:
        return self.lr_steps or [self.iterations // 2, self.iterations * 3 // 4]
