"""``python -m model train``: train or fine-tune an EXTD variant; prints the final checkpoint.

Every flag but ``--resume`` is a field of :class:`model.train.TrainConfig`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from model.commands.arguments import add_options, options_from
from model.train import TrainConfig, Trainer


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "train",
        help="train or fine-tune a variant on WIDER FACE (torchrun for several processes)",
        description=__doc__,
    )
    add_options(parser, TrainConfig)
    parser.add_argument("--resume", type=Path, help="a state-it*.pt file to continue from")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    trainer = Trainer(options_from(TrainConfig, args), resume=args.resume, runtime=args.runtime)
    final = trainer.train()
    if trainer.is_main:
        print(final)
    return 0
