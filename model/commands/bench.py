"""``python -m model bench``: time the Detector (network plus post-processing).

A real image is resized to the requested size once, then the Detector runs
on a batch of copies at exactly that size, after warm-up runs. The last line
printed with ``--json`` is ``{"backend": .., "ms_per_image": .., ...}``.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from model.commands.arguments import add_options, build_detector
from model.images import open_image
from model.options import DetectorOptions, ScalePolicy


def _size(text: str) -> tuple[int, int]:
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT, got {text!r}") from error
    return width, height


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "bench", help="time the detector on one image size", description=__doc__
    )
    parser.add_argument("--weights", required=True, help="checkpoint file or registry name")
    add_options(parser, DetectorOptions, only=("backend", "device"))
    add_options(parser, ScalePolicy, only=("min_face",))
    parser.add_argument("--threads", type=int, help="intra-op threads (default: all cores)")
    parser.add_argument(
        "--size", type=_size, default=(640, 480), help="WIDTHxHEIGHT (default: 640x480)"
    )
    parser.add_argument("--batch", type=int, default=1, help="images per call (default: 1)")
    parser.add_argument(
        "--runs", type=int, default=5, help="timed runs after the warm-up (default: 5)"
    )
    parser.add_argument("--warmup", type=int, default=2, help="untimed runs first (default: 2)")
    parser.add_argument("--image", type=Path, required=True, help="a real photo to resize")
    parser.add_argument("--json", action="store_true", help="last line: the result as JSON")
    parser.set_defaults(handler=run)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run(args: argparse.Namespace) -> int:
    if args.threads:
        torch.set_num_threads(args.threads)
    width, height = args.size
    pixels = np.asarray(
        Image.fromarray(open_image(args.image)).resize((width, height), Image.BILINEAR)
    )
    detector = build_detector(args, batch_size=args.batch)
    images = [pixels] * args.batch
    # At its own size, or shrunk as min_face asks.
    sizing = {"min_face": args.min_face} if args.min_face else {"scale": 1.0}
    for _ in range(args.warmup):
        detector.detect(images, **sizing)
    _sync(detector.device)
    if detector.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(detector.device)
    seconds = []
    for _ in range(args.runs):
        start = time.perf_counter()
        faces = detector.detect(images, **sizing)
        _sync(detector.device)
        seconds.append(time.perf_counter() - start)
    per_image_ms = [s * 1000 / args.batch for s in seconds]
    result = {
        "backend": detector.backend.name,
        "weights": str(args.weights),
        "variant": detector.variant.name,
        "device": str(detector.device),
        "threads": torch.get_num_threads(),
        "size": [width, height],
        "min_face": args.min_face,
        "batch": args.batch,
        "runs": args.runs,
        "ms_per_image": round(statistics.median(per_image_ms), 2),
        "ms_per_image_min": round(min(per_image_ms), 2),
        "images_per_s": round(1000 / statistics.median(per_image_ms), 2),
        "faces": int((faces[0][:, 4] >= 0.5).sum()),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }
    if detector.device.type == "cuda":
        result["peak_gpu_mb"] = round(torch.cuda.max_memory_allocated(detector.device) / 2**20, 1)
    print(
        f"{result['backend']} {result['variant']} {width}x{height} batch {args.batch}, "
        f"{result['threads']} threads: {result['ms_per_image']} ms/image"
    )
    if args.json:
        print(json.dumps(result))
    return 0
