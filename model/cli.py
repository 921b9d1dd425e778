"""``python -m model``: detect, info, weights, eval, train and bench commands."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from model.checkpoint import CheckpointError
from model.images import ImageError, open_image
from model.runtime import tune_allocator
from model.weights import WeightsError, known_checkpoints, load_checkpoint, pull


def add_detector_arguments(parser: argparse.ArgumentParser, *, weights: bool = True) -> None:
    """Options shared by every command that builds a Detector."""
    if weights:
        parser.add_argument(
            "--weights",
            required=True,
            help="a released .pth, a project .safetensors or a registry name (e.g. extd-64)",
        )
    parser.add_argument(
        "--backend", default="torch", help="inference backend (default: torch, fp32 eager)"
    )
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda")
    parser.add_argument(
        "--scale",
        type=float,
        help="resize by this factor and run the exact size (1 = each image at its own size)",
    )
    parser.add_argument("--max-side", type=int, help="shrink so the long side is at most this")
    parser.add_argument(
        "--max-area", type=int, help="shrink so the area is at most this (default 1700*1200)"
    )


def _detect(args: argparse.Namespace) -> int:
    from model.detector import Detector
    from model.draw import draw_faces

    try:
        arrays = [open_image(Path(p)) for p in args.images]
    except ImageError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    detector = Detector(args.weights, device=args.device, backend=args.backend)
    results = detector.detect(
        arrays,
        score_threshold=args.score_threshold,
        nms_iou=args.nms_iou,
        max_faces=args.max_faces,
        scale=args.scale,
        max_side=args.max_side,
        max_area=args.max_area,
        protocol=args.protocol,
    )
    if args.draw:
        args.draw.mkdir(parents=True, exist_ok=True)
    for path, pixels, faces in zip(args.images, arrays, results, strict=True):
        if args.draw:
            out = args.draw / f"{Path(path).stem}.jpg"
            draw_faces(pixels, faces, min_score=args.show_threshold).save(out, quality=90)
        if not args.json:
            shown = faces[faces[:, 4] >= args.show_threshold]
            print(f"{path}: {len(shown)} faces with score >= {args.show_threshold}")
            for x1, y1, x2, y2, score in shown:
                print(f"  {x1:8.1f} {y1:8.1f} {x2:8.1f} {y2:8.1f}  {score:.3f}")
    if args.json:
        payload = {
            path: [[round(float(v), 3) for v in face] for face in faces]
            for path, faces in zip(args.images, results, strict=True)
        }
        json.dump(payload, sys.stdout)
        sys.stdout.write("\n")
    return 0


def _info(args: argparse.Namespace) -> int:
    checkpoint = load_checkpoint(args.weights)
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


def _weights_pull(args: argparse.Namespace) -> int:
    for path in pull(args.names or None, directory=args.dir, mirror=args.mirror, force=args.force):
        print(path)
    return 0


def _weights_list(args: argparse.Namespace) -> int:
    for entry in known_checkpoints().values():
        print(f"{entry.name:8s} {entry.variant.name:14s} {entry.sha256[:12]}  {entry.url}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from model.bench import register as register_bench
    from model.eval.command import register as register_eval
    from model.train.command import register as register_train

    parser = argparse.ArgumentParser(prog="python -m model", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress to stderr")
    commands = parser.add_subparsers(dest="command", required=True)

    detect = commands.add_parser("detect", help="detect faces in image files")
    detect.add_argument("images", nargs="+", help="image files")
    add_detector_arguments(detect)
    detect.add_argument(
        "--score-threshold",
        type=float,
        default=0.05,
        help="keep scores above this (default 0.05, the release's)",
    )
    detect.add_argument("--nms-iou", type=float, default=0.3)
    detect.add_argument("--max-faces", type=int, default=750, help="0 = no limit")
    detect.add_argument("--protocol", choices=("single", "paper"), default="single")
    detect.add_argument(
        "--json", action="store_true", help="print {image path: [[x1, y1, x2, y2, score], ...]}"
    )
    detect.add_argument(
        "--draw", type=Path, help="write copies of the images with boxes drawn here"
    )
    detect.add_argument(
        "--show-threshold",
        type=float,
        default=0.5,
        help="faces listed and drawn from this score (default 0.5)",
    )
    detect.set_defaults(handler=_detect)

    info = commands.add_parser("info", help="describe a checkpoint")
    info.add_argument("weights", help="checkpoint file or registry name")
    info.add_argument("--json", action="store_true")
    info.set_defaults(handler=_info)

    weights = commands.add_parser("weights", help="the weights registry")
    weight_commands = weights.add_subparsers(dest="weights_command", required=True)
    pull_parser = weight_commands.add_parser(
        "pull", help="download, verify and convert checkpoints"
    )
    pull_parser.add_argument("names", nargs="*", help="registry names (default: all)")
    pull_parser.add_argument(
        "--dir", type=Path, help="target folder (default: $EXTD_WEIGHTS_DIR or ./weights)"
    )
    pull_parser.add_argument(
        "--mirror", help="folder or base URL to fetch from (default: $EXTD_WEIGHTS_MIRROR)"
    )
    pull_parser.add_argument("--force", action="store_true", help="fetch again even if present")
    pull_parser.set_defaults(handler=_weights_pull)
    weight_commands.add_parser("list", help="list known checkpoints").set_defaults(
        handler=_weights_list
    )

    register_eval(commands)
    register_train(commands)
    register_bench(commands)
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
    except (CheckpointError, WeightsError, ImageError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
