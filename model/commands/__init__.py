"""``python -m model``: the command-line layer over the model package.

The core never imports this package; each command module registers its
sub-parser and handler here.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from model.backends.compiled import INDUCTOR_CACHE_VARIABLE, compile_cache
from model.commands import anonymize, batch, bench, checkpoints, data, detect, evaluate, train
from model.errors import ExtdError
from model.options import RuntimeOptions
from model.runtime import tune_allocator

COMMANDS = (detect, anonymize, batch, checkpoints, evaluate, train, bench, data)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m model",
        description="EXTD face detection: detect, anonymize, eval, train, bench.",
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
    try:
        # The one place the model package reads the environment (EXTD_CACHE_DIR, ...).
        args.runtime = RuntimeOptions.from_environment(os.environ)
        tune_allocator(args.runtime.tune_allocator)
        os.environ.setdefault(INDUCTOR_CACHE_VARIABLE, str(compile_cache(args.runtime)))
        return args.handler(args)
    except ExtdError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
