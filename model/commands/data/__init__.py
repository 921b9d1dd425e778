"""``python -m model data``: fetch the weights and WIDER data the tests and benchmarks use."""

from __future__ import annotations

import argparse
from pathlib import Path

from model.commands.data.fetch import MANIFEST, MIRROR_ENV, default_root, fetch, write_manifest


def register(commands: argparse._SubParsersAction) -> None:
    data = commands.add_parser("data", help="the test and benchmark data")
    data_commands = data.add_subparsers(dest="data_command", required=True)
    fetch_parser = data_commands.add_parser(
        "fetch",
        help="download and check the released weights and the WIDER FACE dev split",
        description="Files already present and intact are kept; an interrupted run resumes.",
    )
    fetch_parser.add_argument(
        "--to", type=Path, default=None, help="target folder (default: $EXTD_CACHE_DIR/data)"
    )
    fetch_parser.add_argument(
        "--mirror",
        help=f"folder or base URL with the same layout (default: ${MIRROR_ENV}, "
        "else the public sources)",
    )
    fetch_parser.set_defaults(handler=run_fetch)
    manifest = data_commands.add_parser(
        "manifest", help=f"maintainers: record a complete data folder in {MANIFEST.name}"
    )
    manifest.add_argument("root", type=Path, help="the folder to record")
    manifest.set_defaults(handler=run_manifest)


def run_fetch(args: argparse.Namespace) -> int:
    runtime = args.runtime
    report = fetch(
        args.to or default_root(runtime.cache_dir), mirror=args.mirror or runtime.data_mirror
    )
    print(f"{report.root}: {report.fetched} files fetched, {report.present} already there")
    return 0


def run_manifest(args: argparse.Namespace) -> int:
    write_manifest(args.root)
    print(MANIFEST)
    return 0
