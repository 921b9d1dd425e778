"""Accuracy table of checkpoints on a WIDER split, as printed in the README.

    python scripts/eval_table.py --split ../shared/data/wider_val_dev \
        --weights extd-32 extd-48 extd-64 --modes own-size bucketed paper

Modes: ``own-size`` runs each image at its own size (the release's single
scale), ``bucketed`` the service default (area bound, padded size buckets),
``side-768`` / ``side-512`` shrink the long side to that (cheaper operating
points), ``paper`` the paper's multi-scale + flip protocol. Prints a Markdown table
and, with ``--out``, writes the numbers as JSON.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from model.detector import Detector
from model.eval import evaluate, load_split, predict_split
from model.options import DetectorOptions
from model.runtime import tune_allocator

MODES = {
    "own-size": {"scale": 1.0},
    "bucketed": {},
    "side-768": {"max_side": 768},
    "side-512": {"max_side": 512},
    "paper": {"protocol": "paper"},
}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--split", type=Path, required=True)
    parser.add_argument("--weights", nargs="+", default=["extd-32", "extd-48", "extd-64"])
    parser.add_argument("--modes", nargs="+", choices=list(MODES), default=["own-size", "paper"])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--backend", default="torch")
    parser.add_argument(
        "--bucket-step",
        type=int,
        default=DetectorOptions.bucket_step,
        help="for the bucketed modes",
    )
    parser.add_argument("--limit", type=int)
    parser.add_argument("--threads", type=int)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    tune_allocator()
    if args.threads:
        torch.set_num_threads(args.threads)
    split = load_split(args.split).subset(args.limit)
    rows = []
    print("| checkpoint | mode | easy | medium | hard | images | s/image |")
    print("| --- | --- | --- | --- | --- | --- | --- |", flush=True)
    for weights in args.weights:
        detector = Detector(
            weights, device=args.device, backend=args.backend, bucket_step=args.bucket_step
        )
        for mode in args.modes:
            start = time.perf_counter()
            predictions = predict_split(detector, split, progress=False, **MODES[mode])
            seconds = (time.perf_counter() - start) / len(split.images)
            result = evaluate(predictions, split)
            rows.append(
                {"weights": weights, "mode": mode, **result.summary(), "s_per_image": seconds}
            )
            cells = f"{result.table_cells()} | {result.images} | {seconds:.2f}"
            print(f"| {weights} | {mode} | {cells} |", flush=True)
    if args.out:
        args.out.write_text(
            json.dumps({"split": str(args.split), "device": args.device, "rows": rows}, indent=2)
        )


if __name__ == "__main__":
    main()
