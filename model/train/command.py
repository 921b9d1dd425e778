"""``python -m model train``: train or fine-tune an EXTD variant; prints the final checkpoint."""

from __future__ import annotations

import argparse
from pathlib import Path

from model.train.trainer import TrainConfig, Trainer

DEFAULTS = TrainConfig(data_root="")


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "train",
        help="train or fine-tune a variant on WIDER FACE (torchrun for several processes)",
        description=__doc__,
    )
    parser.add_argument(
        "--data-root", required=True, help="WIDER train download, or a split folder"
    )
    parser.add_argument("--val-split", help="split folder evaluated every --eval-every iterations")
    parser.add_argument(
        "--variant", default=DEFAULTS.variant, help="e.g. fpn-64-prelu, ssd-32-relu"
    )
    parser.add_argument("--init", help="start from this checkpoint (fine-tune) instead of scratch")
    parser.add_argument("--iterations", type=int, default=DEFAULTS.iterations)
    parser.add_argument(
        "--batch-size", type=int, default=DEFAULTS.batch_size, help="over all processes"
    )
    parser.add_argument("--input-size", type=int, default=DEFAULTS.input_size)
    parser.add_argument("--limit-images", type=int, help="train on K images (every k-th)")
    parser.add_argument("--out", default=DEFAULTS.out, help="folder for checkpoints and log.jsonl")
    parser.add_argument("--resume", type=Path, help="a state-it*.pt file to continue from")
    parser.add_argument("--lr", type=float, default=DEFAULTS.lr)
    parser.add_argument("--momentum", type=float, default=DEFAULTS.momentum)
    parser.add_argument("--weight-decay", type=float, default=DEFAULTS.weight_decay)
    parser.add_argument(
        "--lr-steps",
        type=int,
        nargs="+",
        help="iterations where lr drops x0.1 (default: 1/2 and 3/4)",
    )
    parser.add_argument("--workers", type=int, default=DEFAULTS.workers, help="DataLoader workers")
    parser.add_argument("--seed", type=int, default=DEFAULTS.seed)
    parser.add_argument("--device", default=DEFAULTS.device, choices=("auto", "cpu", "cuda"))
    parser.add_argument(
        "--no-amp", action="store_true", help="fp32 on CUDA (default: bf16 autocast)"
    )
    parser.add_argument("--checkpoint-every", type=int, default=DEFAULTS.checkpoint_every)
    parser.add_argument("--eval-every", type=int, default=DEFAULTS.eval_every)
    parser.add_argument("--eval-limit", type=int, default=DEFAULTS.eval_limit)
    parser.add_argument("--log-every", type=int, default=DEFAULTS.log_every)
    parser.add_argument(
        "--check-sync", action="store_true", help="verify after every step that all ranks agree"
    )
    parser.add_argument(
        "--clip-grad-norm", type=float, help="clip the gradient norm (allows larger learning rates)"
    )
    parser.add_argument(
        "--freeze-bn",
        action=argparse.BooleanOptionalAction,
        help="keep batch-norm statistics fixed (default: on with --init, off from scratch)",
    )
    parser.add_argument(
        "--publish",
        help="also write each checkpoint to this file, atomically (e.g. into a weights folder)",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    config = TrainConfig(
        data_root=args.data_root,
        out=args.out,
        variant=args.variant,
        init=args.init,
        val_split=args.val_split,
        iterations=args.iterations,
        batch_size=args.batch_size,
        input_size=args.input_size,
        lr=args.lr,
        momentum=args.momentum,
        weight_decay=args.weight_decay,
        lr_steps=args.lr_steps,
        workers=args.workers,
        seed=args.seed,
        device=args.device,
        amp=not args.no_amp,
        limit_images=args.limit_images,
        checkpoint_every=args.checkpoint_every,
        eval_every=args.eval_every,
        eval_limit=args.eval_limit,
        log_every=args.log_every,
        check_sync=args.check_sync,
        publish=args.publish,
        freeze_bn=args.freeze_bn,
        clip_grad_norm=args.clip_grad_norm,
    )
    trainer = Trainer(config, resume=args.resume)
    final = trainer.train()
    if trainer.is_main:
        print(final)
    return 0
