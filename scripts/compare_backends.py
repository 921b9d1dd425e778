"""A fast backend against the fp32 reference on a WIDER split, as in the README.

    python scripts/compare_backends.py --limit 200 --weights extd-32 extd-64 \
        --backend openvino-int8 --reference openvino

For each checkpoint: AP (easy / medium / hard) of both, and how many of the
reference's faces scoring >= 0.5 the backend finds again at IoU >= 0.9 (the
reduced-precision criterion), with the best IoU of each one it misses.
Images run at their own size (``--bucketed``: the service default).
"""

from __future__ import annotations

import argparse
import os
from dataclasses import replace
from pathlib import Path

from model.detector import Detector
from model.eval import evaluate, faces_found, load_split, predict_split
from model.options import RuntimeOptions
from model.runtime import tune_allocator
from model.weights import load_checkpoint
from tools import data


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--split", type=Path, help="a WIDER split (default: the dev split)")
    parser.add_argument("--weights", nargs="+", default=["extd-32", "extd-48", "extd-64"])
    parser.add_argument("--backend", default="openvino-bf16")
    parser.add_argument("--reference", default="torch", help="an fp32 backend")
    parser.add_argument("--limit", type=int)
    parser.add_argument("--bucketed", action="store_true")
    parser.add_argument(
        "--calibration",
        type=Path,
        help="int8 calibration photos (default: EXTD_CALIBRATION_DIR, else the shipped ones)",
    )
    args = parser.parse_args()

    runtime = RuntimeOptions.from_environment(os.environ)
    if args.calibration:
        runtime = replace(runtime, calibration_dir=args.calibration)
    tune_allocator(runtime.tune_allocator)
    split = load_split(args.split or data.require(*data.DEV_SPLIT)).subset(args.limit)
    scale = None if args.bucketed else 1.0
    print("| checkpoint | backend | easy | medium | hard | faces found | missed at IoU |")
    print("| --- | --- | --- | --- | --- | --- | --- |", flush=True)
    for weights in args.weights:
        # Read once, shared by both backends.
        checkpoint = load_checkpoint(weights, runtime=runtime)
        reference, candidate = (
            predict_split(
                Detector(checkpoint, backend=b, runtime=runtime), split, scale=scale, progress=False
            )
            for b in (args.reference, args.backend)
        )
        reference_ap, candidate_ap = (
            evaluate(p, split).table_cells() for p in (reference, candidate)
        )
        print(f"| {weights} | {args.reference} | {reference_ap} | reference | |")
        found = faces_found(reference, candidate)
        missed = ", ".join(f"{iou:.2f}" for iou in found.missed_iou)
        print(
            f"| {weights} | {args.backend} | {candidate_ap} "
            f"| {found.found} of {found.total} ({found.fraction:.2%}) | {missed} |",
            flush=True,
        )
    print(f"{len(split.images)} images, {'bucketed' if args.bucketed else 'own size'}")


if __name__ == "__main__":
    main()
