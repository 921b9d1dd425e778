"""``python -m model info`` and ``python -m model weights``: describe, list and pull checkpoints."""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

from model.weights import MIRROR_ENV, WEIGHTS_DIR_ENV, known_checkpoints, load_checkpoint, pull


def register(commands: argparse._SubParsersAction) -> None:
    info = commands.add_parser("info", help="describe a checkpoint")
    info.add_argument("weights", help="checkpoint file or registry name")
    info.add_argument("--json", action="store_true", help="print one JSON object")
    info.set_defaults(handler=describe)

    weights = commands.add_parser("weights", help="the weights registry")
    weight_commands = weights.add_subparsers(dest="weights_command", required=True)
    pull_parser = weight_commands.add_parser(
        "pull", help="download, verify and convert checkpoints"
    )
    pull_parser.add_argument("names", nargs="*", help="registry names (default: all)")
    pull_parser.add_argument(
        "--dir",
        type=Path,
        help=f"target folder (default: ${WEIGHTS_DIR_ENV}, else weights in the cache folder)",
    )
    pull_parser.add_argument(
        "--mirror", help=f"folder or base URL to fetch from (default: ${MIRROR_ENV})"
    )
    pull_parser.add_argument("--force", action="store_true", help="fetch again even if present")
    pull_parser.set_defaults(handler=pull_weights)
    weight_commands.add_parser("list", help="list known checkpoints").set_defaults(
        handler=list_weights
    )


def describe(args: argparse.Namespace) -> int:
    checkpoint = load_checkpoint(args.weights, runtime=args.runtime)
    info = {
        "variant": checkpoint.variant.name,
        "parameters": checkpoint.num_parameters,
        "source": checkpoint.source,
        "sha256": checkpoint.sha256,
        "training": checkpoint.training,
    }
    if args.json:
        print(json.dumps(info))
    else:
        for key, value in info.items():
            print(f"{key:11s} {value}")
    return 0


def pull_weights(args: argparse.Namespace) -> int:
    runtime = dataclasses.replace(
        args.runtime,
        weights_dir=args.dir or args.runtime.weights_dir,
        weights_mirror=args.mirror or args.runtime.weights_mirror,
    )
    for path in pull(args.names or None, runtime=runtime, force=args.force):
        print(path)
    return 0


def list_weights(args: argparse.Namespace) -> int:
    for entry in known_checkpoints().values():
        print(f"{entry.name:8s} {entry.variant.name:14s} {entry.sha256[:12]}  {entry.url}")
    return 0
