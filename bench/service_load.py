"""Closed-loop load against the live service: backends and batching side by side, in one run.

    python bench/service_load.py --clients 8 --duration 30 --backends openvino auto
    python bench/service_load.py --configs batching "no batching" --backends openvino

Starts ``python -m service`` once per backend and configuration (same weights,
same images), lets N clients each send one request at a time, cycling through
real WIDER images at their own size, and prints images/s and latency
percentiles side by side, measured after a warm-up. ``auto`` with
``EXTD_CALIBRATION_DIR`` set in the environment resolves to int8.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import tempfile
from pathlib import Path

import httpx

from model.options import RuntimeOptions
from model.weights import pull
from tools import data
from tools.launcher import launch
from tools.load import closed_loop

CONFIGS = {
    "batching": {"EXTD_MAX_BATCH_SIZE": "16", "EXTD_MAX_BATCH_DELAY_MS": "5"},
    "no batching": {"EXTD_MAX_BATCH_SIZE": "1", "EXTD_MAX_BATCH_DELAY_MS": "0"},
}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--images",
        type=Path,
        help="a photo, or a folder whose JPEGs (every k-th of --limit) the clients cycle "
        "through (default: the dev split's images)",
    )
    parser.add_argument("--limit", type=int, default=64, help="images taken from the folder")
    parser.add_argument("--model", default="extd-64")
    parser.add_argument("--mirror", help="where the weights are pulled from (default: found data)")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--duration", type=float, default=30, help="seconds measured")
    parser.add_argument("--warmup", type=float, default=10, help="seconds of load before measuring")
    parser.add_argument(
        "--max-side", type=int, help="request parameter (default: the service default)"
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--backends", nargs="+", default=["openvino", "auto"], help="compared side by side"
    )
    parser.add_argument("--images-per-request", type=int, default=1)
    parser.add_argument("--configs", nargs="+", choices=list(CONFIGS), default=["batching"])
    parser.add_argument("--max-batch-size", type=int, default=16, help="of the batching config")
    parser.add_argument("--decode-threads", type=int, help="server setting (default: its own)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON too")
    args = parser.parse_args()

    args.images = args.images or data.require("data", "wider_val_dev", "images")
    args.mirror = str(args.mirror or data.require("weights"))
    files = sorted(args.images.rglob("*.jpg")) if args.images.is_dir() else [args.images]
    payloads = [f.read_bytes() for f in files[:: max(1, len(files) // args.limit)][: args.limit]]
    params = {"model": args.model} | ({"max_side": args.max_side} if args.max_side else {})
    results = {}
    with tempfile.TemporaryDirectory() as scratch:
        weights = Path(scratch) / "weights"
        pull([args.model], runtime=RuntimeOptions(weights_dir=weights, weights_mirror=args.mirror))
        for backend, config in itertools.product(args.backends, args.configs):
            name = f"{backend}, {config}"
            env = dict(CONFIGS[config])
            if config == "batching":
                env["EXTD_MAX_BATCH_SIZE"] = str(args.max_batch_size)
            if args.decode_threads:
                env["EXTD_DECODE_THREADS"] = str(args.decode_threads)
            settings = {
                "EXTD_WEIGHTS_DIR": str(weights),
                "EXTD_WATCH_WEIGHTS": "false",
                "EXTD_LOG_LEVEL": "warning",
                "EXTD_DEVICE": args.device,
                "EXTD_BACKEND": backend,
                "EXTD_QUEUE_SIZE": str(4 * args.clients * args.images_per_request),
                **env,
            }
            server = launch(Path(scratch) / f"{backend}-{config}".replace(" ", "-"), settings)
            try:
                models = httpx.get(f"{server.url}/v1/models").json()["models"]
                name += f" ({models[0]['backend']})"
                load = closed_loop(
                    server.url,
                    payloads,
                    params,
                    clients=args.clients,
                    warmup_s=args.warmup,
                    duration_s=args.duration,
                    per_request=args.images_per_request,
                )
                results[name] = asyncio.run(load)
            finally:
                server.stop()
    print(
        f"{args.clients} clients x {args.images_per_request} images per request, "
        f"{args.duration:.0f} s after {args.warmup:.0f} s of warm-up, "
        f"{args.model} on {args.device}, {len(payloads)} images from {args.images}"
    )
    print("| backend, config | images/s | p50 ms | p95 ms | p99 ms | errors | vs first |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    first = next(iter(results.values()))["images_per_s"]
    for name, r in results.items():
        print(
            f"| {name} | {r['images_per_s']:.2f} | {r['p50_ms']:.0f} | {r['p95_ms']:.0f} "
            f"| {r['p99_ms']:.0f} | {r['errors']} | {r['images_per_s'] / first:.2f}x |"
        )
    for name, r in results.items():
        print(f"{name}: server side {r['server']}")
    if args.json:
        print(json.dumps(results))


if __name__ == "__main__":
    main()
