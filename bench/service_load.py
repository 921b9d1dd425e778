"""Closed-loop load against the live service: batching on versus off, in one run.

    python bench/service_load.py --clients 8 --duration 30 --model extd-64

Starts ``python -m service`` once per configuration (same weights, same
image), lets N clients each send one request at a time for the duration,
and prints images/s and latency percentiles side by side.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

from model.weights import pull
from service.launcher import launch

CONFIGS = {
    "batching": {"EXTD_MAX_BATCH_SIZE": "16", "EXTD_MAX_BATCH_DELAY_MS": "5"},
    "no batching": {"EXTD_MAX_BATCH_SIZE": "1", "EXTD_MAX_BATCH_DELAY_MS": "0"},
}


async def closed_loop(
    url: str, payload: bytes, params: dict, clients: int, duration_s: float
) -> dict:
    latencies: list[float] = []
    errors = 0
    async with httpx.AsyncClient(
        base_url=url, timeout=120, limits=httpx.Limits(max_connections=clients)
    ) as http:
        await http.post("/v1/detect", params=params, files={"images": ("a.jpg", payload)})
        stop_at = time.perf_counter() + duration_s

        async def client() -> None:
            nonlocal errors
            while time.perf_counter() < stop_at:
                start = time.perf_counter()
                response = await http.post(
                    "/v1/detect", params=params, files={"images": ("a.jpg", payload)}
                )
                if response.status_code == 200:
                    latencies.append(time.perf_counter() - start)
                else:
                    errors += 1

        started = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(clients)))
        elapsed = time.perf_counter() - started
    ms = np.array(latencies) * 1000
    return {
        "images_per_s": len(latencies) / elapsed,
        "p50_ms": float(np.percentile(ms, 50)),
        "p95_ms": float(np.percentile(ms, 95)),
        "p99_ms": float(np.percentile(ms, 99)),
        "requests": len(latencies),
        "errors": errors,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--image",
        type=Path,
        default=Path(
            "../shared/data/wider_val_dev/images/12--Group/12_Group_Group_12_Group_Group_12_182.jpg"
        ),
    )
    parser.add_argument("--model", default="extd-64")
    parser.add_argument(
        "--mirror", default="../shared/weights", help="where the weights are pulled from"
    )
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--duration", type=float, default=30)
    parser.add_argument(
        "--max-side", type=int, help="request parameter (default: the service default)"
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--backend", default="torch")
    parser.add_argument("--json", action="store_true", help="print the results as JSON too")
    args = parser.parse_args()

    payload = args.image.read_bytes()
    params = {"model": args.model} | ({"max_side": args.max_side} if args.max_side else {})
    results = {}
    with tempfile.TemporaryDirectory() as scratch:
        weights = Path(scratch) / "weights"
        pull([args.model], directory=weights, mirror=args.mirror)
        for name, env in CONFIGS.items():
            settings = {
                "EXTD_WEIGHTS_DIR": str(weights),
                "EXTD_WATCH_WEIGHTS": "false",
                "EXTD_LOG_LEVEL": "warning",
                "EXTD_DEVICE": args.device,
                "EXTD_BACKEND": args.backend,
                "EXTD_QUEUE_SIZE": str(4 * args.clients),
                **env,
            }
            server = launch(Path(scratch) / name.replace(" ", "-"), settings)
            try:
                results[name] = asyncio.run(
                    closed_loop(server.url, payload, params, args.clients, args.duration)
                )
            finally:
                server.stop()
    print(
        f"{args.clients} clients, {args.duration:.0f} s, {args.model}, "
        f"{args.backend} on {args.device}, image {args.image.name}"
    )
    print(
        f"{'config':12s} {'img/s':>8s} {'p50 ms':>8s} {'p95 ms':>8s} {'p99 ms':>8s} {'errors':>7s}"
    )
    for name, r in results.items():
        print(
            f"{name:12s} {r['images_per_s']:8.2f} {r['p50_ms']:8.0f} {r['p95_ms']:8.0f} "
            f"{r['p99_ms']:8.0f} {r['errors']:7d}"
        )
    base = results["no batching"]["images_per_s"]
    print(f"batching / no batching throughput: {results['batching']['images_per_s'] / base:.2f}x")
    if args.json:
        print(json.dumps(results))


if __name__ == "__main__":
    main()
