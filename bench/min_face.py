"""``min_face``: the face size the network needs, and what asking for larger faces saves.

    python bench/min_face.py --limit 200          # about 10 minutes on 2 cores

1. Recall by face size in the network input: each dev image at scales 1,
   1/2 and 1/4 (EXTD-64, scores >= 0.5, IoU >= 0.5, hard-set faces): the
   smallest size whose recall is close to that of large faces is
   ``RELIABLE_FACE`` (``model/conventions.py``), where ``min_face`` puts the
   smallest face asked for.
2. For each ``--min-faces`` value, on the same images with the service's
   default policy: recall of the faces >= min_face, AP (easy / medium / hard)
   with smaller faces ignored (neither found nor false), and ms per image on
   one thread for the whole Detector path (reading the JPEG included),
   side by side with min_face 0.
"""

from __future__ import annotations

import argparse
import statistics
import time
from itertools import pairwise
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from model.conventions import RELIABLE_FACE, corners_to_prediction
from model.detector import Detector
from model.eval import evaluate, load_split
from model.eval.predictions import image_key
from model.eval.recall import found_faces, recall_by_size
from model.eval.split import WiderSplit, at_least
from model.options import RELEASE, SERVING, ScalePolicy
from model.runtime import tune_allocator
from tools import data

EDGES = (4, 6, 8, 10, 12, 14, 16, 20, 24, 32, 48, 64, 128, 100_000)
SCALES = (1.0, 0.5, 0.25)


def by_input_size(detector: Detector, split: WiderSplit) -> None:
    sizes, found = [], []
    for scale in SCALES:
        predictions = {}
        for name in tqdm(split.images, desc=f"scale {scale}", unit="img"):
            (faces,) = detector.detect(
                [split.image_path(name)], score_threshold=SERVING.score_threshold, scale=scale
            )
            predictions[image_key(name)] = corners_to_prediction(faces)
        these, hits = found_faces(predictions, split)
        sizes.append(these * scale)
        found.append(hits)
    recalls = recall_by_size(np.concatenate(sizes), np.concatenate(found), EDGES)
    print(f"\n## Recall by face size in the network input (hard-set faces, scales {SCALES})")
    print("| face size (px) | faces | recall |")
    print("| --- | --- | --- |")
    for (low, high), recall in zip(pairwise(EDGES), recalls, strict=True):
        label = f"{low} to {high}" if high < 100_000 else f"{low} and more"
        print(f"| {label} | {recall.total} | {recall.fraction:.3f} |")
    print(f"(RELIABLE_FACE is {RELIABLE_FACE})", flush=True)


def _run(detector: Detector, split: WiderSplit, min_face: int):
    """Predictions (release thresholds, for the AP), ms per image as served (the service's
    thresholds), median input size."""
    policy = ScalePolicy(min_face=min_face or None)
    predictions, times, inputs = {}, [], []
    for name in tqdm(split.images, desc=f"min_face {min_face}", unit="img"):
        start = time.perf_counter()
        item = detector.load(split.image_path(name), policy)
        detector.run([item], [SERVING])
        times.append((time.perf_counter() - start) * 1000)
        (faces,) = detector.run([item], [RELEASE])
        inputs.append(item.plan.resized)
        predictions[image_key(name)] = corners_to_prediction(faces)
    height, width = (int(statistics.median(v)) for v in zip(*inputs, strict=True))
    return predictions, statistics.mean(times), f"{width}x{height}"


def min_face_table(detector: Detector, split: WiderSplit, min_faces: list[int]) -> None:
    full, full_ms, full_size = _run(detector, split, 0)
    print(f"\n## min_face on {len(split.images)} dev images, one thread, {detector.backend.name}")
    print(
        "Faces >= min_face only (hard-set lists; smaller ones ignored): recall at score >= "
        f"{SERVING.score_threshold} and IoU >= 0.5, at full size and with min_face; AP with "
        "min_face. Time: the Detector path per image as served (reading the JPEG included, "
        "the service's thresholds).\n"
    )
    print(
        "| min_face | input (median) | faces | recall, full size | recall | easy | medium "
        "| hard | hard, full size | ms per image | speed-up |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for min_face in min_faces:
        predictions, ms, size = (
            _run(detector, split, min_face) if min_face else (full, full_ms, full_size)
        )
        restricted = at_least(split, min_face)
        _, at_full = found_faces(full, restricted, min_score=SERVING.score_threshold)
        _, found = found_faces(predictions, restricted, min_score=SERVING.score_threshold)
        result = evaluate(predictions, restricted)
        print(
            f"| {min_face or 'none'} | {size} | {len(found)} | {at_full.mean():.4f} "
            f"| {found.mean():.4f} | {result.table_cells()} "
            f"| {evaluate(full, restricted).ap['hard']:.4f} | {ms:.0f} | {full_ms / ms:.1f}x |",
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--split", type=Path, help="a WIDER split (default: the dev split)")
    parser.add_argument("--limit", type=int, default=200, help="images, every k-th")
    parser.add_argument("--weights", default=None, help="default: EXTD_64.pth of the found data")
    parser.add_argument("--backend", default="openvino")
    parser.add_argument("--min-faces", type=int, nargs="+", default=[0, 20, 40, 80])
    parser.add_argument(
        "--sections", nargs="+", choices=["sizes", "table"], default=["sizes", "table"]
    )
    args = parser.parse_args()
    tune_allocator()
    split = load_split(args.split or data.require(*data.DEV_SPLIT)).subset(args.limit)
    weights = args.weights or data.require("weights", "EXTD_64.pth")
    if "sizes" in args.sections:
        by_input_size(Detector(weights, backend=args.backend), split)
    if "table" in args.sections:
        torch.set_num_threads(1)  # OpenVINO takes the thread count when it compiles
        min_face_table(Detector(weights, backend=args.backend), split, args.min_faces)


if __name__ == "__main__":
    main()
