"""``python -m model``: the command-line layer over the model package.

The core never imports this package; each command module registers its
sub-parser and handler here.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from model.checkpoint import CheckpointError
from model.commands import bench, checkpoints, data, detect, evaluate, train
from model.fetch import DataError
from model.images import ImageError
from model.runtime import tune_allocator
from model.weights import WeightsError

COMMANDS = (detect, checkpoints, evaluate, train, bench, data)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m model", description="EXTD face detection: detect, eval, train, bench."
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress to stderr")
    commands = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    tune_allocator()
    try:
        return args.handler(args)
    except (CheckpointError, WeightsError, DataError, ImageError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
