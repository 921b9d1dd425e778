"""``python -m model eval``: score a detector, or a prediction folder, on a WIDER split."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from pathlib import Path

from model.commands.arguments import add_detector_options, build_detector, options_from
from model.eval import SETTINGS, evaluate, load_split, predict_split, read_predictions
from model.eval.plot import plot_curves
from model.eval.predictions import write_predictions
from model.options import ScalePolicy


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "eval",
        help="WIDER FACE AP (easy / medium / hard) of a detector or a prediction folder",
        description="Run a detector over a WIDER split (or read --pred) and print the official AP.",
    )
    parser.add_argument(
        "--split",
        type=Path,
        required=True,
        help="split folder (images/, *_bbx_gt.txt, difficulty.json)",
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--weights", help="checkpoint file or registry name to evaluate")
    source.add_argument("--pred", type=Path, help="score this prediction folder instead")
    add_detector_options(parser, weights=False)
    parser.add_argument(
        "--limit",
        type=int,
        help="evaluate N images, every k-th, spanning all events (default: all)",
    )
    parser.add_argument(
        "--pred-out", type=Path, help="write the predictions here (official format)"
    )
    parser.add_argument("--plot", type=Path, help="draw the precision-recall curves into this PNG")
    parser.add_argument(
        "--json",
        action="store_true",
        help='last line: {"easy": .., "medium": .., "hard": .., "images": N}',
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    split = load_split(args.split).subset(args.limit)
    if args.pred:
        predictions = read_predictions(args.pred)
        title = str(args.pred)
    else:
        detector = build_detector(args)
        policy = options_from(ScalePolicy, args)
        predictions = predict_split(detector, split, protocol=args.protocol, **asdict(policy))
        title = f"{args.weights} ({args.protocol}, scale {args.scale or 'auto'}, {args.backend})"
        if args.pred_out:
            write_predictions(args.pred_out, predictions)
    result = evaluate(predictions, split)
    if args.plot:
        plot_curves(result, args.plot, title=title)
    for setting in SETTINGS:
        print(f"{setting:6s} AP {result.ap[setting]:.4f}")
    if args.json:
        print(json.dumps(result.summary()))
    return 0
