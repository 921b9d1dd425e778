"""``min_face``: the face size the network needs, and what asking for larger faces saves.

    python bench/min_face.py --limit 200          # about 10 minutes on 2 cores

1. Recall by face size in the network input, on the dev split's tuning half:
   each image at scales 1, 1/2 and 1/4 (scores >= 0.5, IoU >= 0.5, hard-set
   faces): what ``RELIABLE_FACE`` (``model/conventions.py``), the size
   ``min_face`` puts the smallest face asked for at, is chosen from.
2. For each ``--min-faces`` value, on both halves with the service's default
   policy: recall of the faces >= min_face, AP (easy / medium / hard) with
   smaller faces ignored (neither found nor false), and ms per image on one
   thread for the whole Detector path (reading the JPEG included), side by
   side with min_face 0.
3. Through HTTP, on the reporting half: the real service on 127.0.0.1, one
   photo a request and one request at a time, at full size and with each
   min_face; the client's time per photo and the stages the answer's
   ``timings_ms`` reports (upload, decode, queue, resize, network,
   post-processing, JSON), and the recall of the faces >= min_face in the
   answers.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from dataclasses import replace
from itertools import pairwise
from pathlib import Path

import httpx
import numpy as np
import torch
from tqdm import tqdm

from model.conventions import RELIABLE_FACE, corners_to_prediction
from model.detector import Detector
from model.eval import evaluate, load_split
from model.eval.predictions import image_key
from model.eval.recall import found_faces, recall_by_size
from model.eval.split import HALVES, WiderSplit, at_least
from model.options import RELEASE, SERVING, RuntimeOptions, ScalePolicy
from model.runtime import tune_allocator
from model.weights import pull
from tools import data
from tools.launcher import launch

EDGES = (4, 6, 8, 10, 12, 14, 16, 20, 24, 32, 48, 64, 128, 100_000)
SCALES = (1.0, 0.5, 0.25)
# The stages of a request in the order it goes through them (the answer's timings_ms).
STAGES = ("upload", "decode", "queue", "resize", "network", "postprocess", "json")


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
    print(
        f"\n## Recall by face size in the network input, {detector.variant.name}, "
        f"{len(split.images)} images of the tuning half (hard-set faces, scales {SCALES})"
    )
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


def recall_at_least(predictions: dict[str, np.ndarray], split: WiderSplit, min_face: int) -> float:
    """Recall of the hard-set faces >= ``min_face`` at the service's score threshold."""
    _, found = found_faces(
        predictions, at_least(split, min_face), min_score=SERVING.score_threshold
    )
    return float(found.mean())


def min_face_table(detector: Detector, split: WiderSplit, half: str, min_faces: list[int]) -> None:
    full, full_ms, full_size = _run(detector, split, 0)
    print(
        f"\n## min_face on the {half} half ({len(split.images)} dev images), one thread, "
        f"{detector.variant.name} on {detector.backend.name}"
    )
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
        _, found = found_faces(predictions, restricted, min_score=SERVING.score_threshold)
        result = evaluate(predictions, restricted)
        print(
            f"| {min_face or 'none'} | {size} | {len(found)} "
            f"| {recall_at_least(full, split, min_face):.4f} | {found.mean():.4f} "
            f"| {result.table_cells()} | {evaluate(full, restricted).ap['hard']:.4f} "
            f"| {ms:.0f} | {full_ms / ms:.1f}x |",
            flush=True,
        )


def _request(client: httpx.Client, payload: bytes, min_face: int) -> tuple[float, dict]:
    """One photo through ``/v1/detect``: the client's milliseconds and the answer."""
    start = time.perf_counter()
    response = client.post(
        "/v1/detect", params={"min_face": min_face}, files={"images": ("photo.jpg", payload)}
    )
    elapsed = (time.perf_counter() - start) * 1000
    response.raise_for_status()
    return elapsed, response.json()


def http_table(server_url: str, split: WiderSplit, min_faces: list[int]) -> None:
    """Each photo alone through the service, at full size and with each min_face (after one
    untimed round, so every input shape has been set up once)."""
    payloads = {name: split.image_path(name).read_bytes() for name in split.images}
    settings = [0, *(m for m in min_faces if m)]
    client_ms: dict[int, list[float]] = {m: [] for m in settings}
    stages: dict[int, list[dict]] = {m: [] for m in settings}
    predictions: dict[int, dict[str, np.ndarray]] = {m: {} for m in settings}
    with httpx.Client(base_url=server_url, timeout=120) as client:
        backend = client.get("/v1/models").json()["models"][0]["backend"]
        for timed in (False, True):
            for name, payload in tqdm(payloads.items(), desc="http", unit="img", leave=False):
                for min_face in settings:
                    elapsed, answer = _request(client, payload, min_face)
                    if not timed:
                        continue
                    client_ms[min_face].append(elapsed)
                    stages[min_face].append(answer["timings_ms"])
                    faces = answer["results"][0]["faces"]
                    rows = [[*f["box"], f["score"]] for f in faces]
                    predictions[min_face][image_key(name)] = corners_to_prediction(
                        np.array(rows, dtype=np.float32).reshape(-1, 5)
                    )
    print(
        f"\n## Through HTTP, one photo at a time: {len(payloads)} photos of the reporting half, "
        f"{backend}, mean ms per photo"
    )
    print(
        "client: the request as the client times it; rest: what the stages leave of it "
        "(HTTP, the response's encoding). Recall of the faces >= min_face (hard-set lists, "
        f"score >= {SERVING.score_threshold}, IoU >= 0.5) in the answers.\n"
    )
    print(
        "| min_face | client | "
        + " | ".join(STAGES)
        + " | rest | speed-up | recall, full size | recall |"
    )
    print("| --- " * (len(STAGES) + 6) + "|")
    full_ms = statistics.mean(client_ms[0])
    for min_face in settings:
        mean = {s: statistics.mean(t.get(s, 0.0) for t in stages[min_face]) for s in STAGES}
        server = mean["upload"] + statistics.mean(t["total"] for t in stages[min_face])
        client = statistics.mean(client_ms[min_face])
        print(
            f"| {min_face or 'none'} | {client:.1f} | "
            + " | ".join(f"{mean[s]:.1f}" for s in STAGES)
            + f" | {client - server - mean['json']:.1f} | {full_ms / client:.2f}x "
            f"| {recall_at_least(predictions[0], split, min_face):.4f} "
            f"| {recall_at_least(predictions[min_face], split, min_face):.4f} |",
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--split", type=Path, help="a WIDER split (default: the dev split)")
    parser.add_argument("--limit", type=int, default=200, help="images of each half, every k-th")
    parser.add_argument("--http-limit", type=int, default=100, help="photos sent through HTTP")
    parser.add_argument(
        "--weights", default="extd-64", help="a registry name (pulled from the found data)"
    )
    parser.add_argument("--backend", default="auto")
    parser.add_argument("--min-faces", type=int, nargs="+", default=[0, 20, 40, 80])
    parser.add_argument(
        "--sections",
        nargs="+",
        choices=["sizes", "table", "http"],
        default=["sizes", "table", "http"],
    )
    args = parser.parse_args()
    tune_allocator()
    split = load_split(args.split or data.require(*data.DEV_SPLIT))
    halves = {half: split.half(half).subset(args.limit) for half in HALVES}
    with tempfile.TemporaryDirectory() as scratch:
        runtime = replace(
            RuntimeOptions.from_environment(os.environ),
            weights_dir=Path(scratch) / "weights",
            weights_mirror=str(data.require("weights")),
        )
        pull([args.weights], runtime=runtime)  # the one model the service loads
        if "http" in args.sections:
            settings = {
                "EXTD_WEIGHTS_DIR": str(runtime.weights_dir),
                "EXTD_WATCH_WEIGHTS": "false",
                "EXTD_BACKEND": args.backend,
                "EXTD_LOG_LEVEL": "warning",
            }
            server = launch(Path(scratch) / "server", settings)
            try:
                http_table(server.url, split.half("report").subset(args.http_limit), args.min_faces)
            finally:
                server.stop()
        if "sizes" in args.sections:
            by_input_size(
                Detector(args.weights, backend=args.backend, runtime=runtime), halves["tune"]
            )
        if "table" in args.sections:
            torch.set_num_threads(1)  # OpenVINO takes the thread count when it compiles
            detector = Detector(args.weights, backend=args.backend, runtime=runtime)
            for half, part in halves.items():
                min_face_table(detector, part, half, args.min_faces)


if __name__ == "__main__":
    main()
