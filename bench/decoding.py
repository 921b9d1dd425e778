"""Decoding phone-sized JPEGs at reduced size (DCT scaling) against full decoding.

    python bench/decoding.py --limit 200

Each dev image is upscaled to about 12 megapixels (bicubic) and saved as a
quality-90 JPEG in memory, like a phone photo. It is then decoded twice, in
full and at the smallest 1/2, 1/4 or 1/8 scale that still covers the
network input the service's default policy gives it, and detected both ways
(boxes mapped back to the original image for the WIDER AP). Prints decode
time (median ms) and easy / medium / hard AP side by side.
"""

from __future__ import annotations

import argparse
import io
import math
import statistics
import time
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from model.conventions import corners_to_prediction
from model.detector import Detector
from model.eval import evaluate, load_split
from model.eval.predictions import image_key
from model.images import read_header
from model.inputs import decode
from model.options import PostprocessOptions, ScalePolicy
from model.runtime import tune_allocator
from tools import data

TARGET_PIXELS = 12_000_000


def phone_jpeg(path: Path) -> tuple[bytes, float]:
    image = Image.open(path).convert("RGB")
    factor = math.sqrt(TARGET_PIXELS / (image.width * image.height))
    size = (round(image.width * factor), round(image.height * factor))
    buffer = io.BytesIO()
    image.resize(size, Image.Resampling.BICUBIC).save(buffer, "JPEG", quality=90)
    return buffer.getvalue(), factor


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--split", type=Path, help="a WIDER split (default: the dev split)")
    parser.add_argument("--weights", default="extd-64")
    parser.add_argument("--backend", default="openvino")
    parser.add_argument("--limit", type=int, default=200)
    args = parser.parse_args()

    tune_allocator()
    split = load_split(args.split or data.require(*data.DEV_SPLIT)).subset(args.limit)
    detector = Detector(args.weights, backend=args.backend)
    policy, options = ScalePolicy(), PostprocessOptions()
    times: dict[str, list[float]] = {"full": [], "reduced": []}
    predictions: dict[str, dict[str, np.ndarray]] = {"full": {}, "reduced": {}}
    for name in tqdm(split.images, unit="img"):
        photo, factor = phone_jpeg(split.image_path(name))
        plan = detector.plan(read_header(photo).size, policy)
        for mode in ("full", "reduced"):
            start = time.perf_counter()
            item = decode(photo, plan, full_size=mode == "full")
            times[mode].append((time.perf_counter() - start) * 1000)
            (faces,) = detector.run([item], [options])
            faces[:, :4] /= factor  # back to the original WIDER image
            predictions[mode][image_key(name)] = corners_to_prediction(faces)
    print(f"{len(split.images)} images upscaled to ~12 MP, {args.weights}, {args.backend}")
    print("| decoding | decode ms (median) | easy | medium | hard |")
    print("| --- | --- | --- | --- | --- |")
    for mode in ("full", "reduced"):
        result = evaluate(predictions[mode], split)
        print(f"| {mode} | {statistics.median(times[mode]):.0f} | {result.table_cells()} |")


if __name__ == "__main__":
    main()
