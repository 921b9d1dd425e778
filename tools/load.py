"""Closed-loop HTTP load on a live service, and the server's own view of it (its metrics).

The benchmarks that load the service (bench/service_load.py, bench/gpu_all.py) share this.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import Counter

import httpx
import numpy as np
from prometheus_client.parser import text_string_to_metric_families


async def closed_loop(
    url: str,
    payloads: list[bytes],
    params: dict,
    *,
    clients: int,
    warmup_s: float,
    duration_s: float,
    per_request: int,
) -> dict:
    """Clients run from the start; only requests sent after ``warmup_s`` count, so the
    numbers are the steady state (the first batches of each new shape are slow). ``statuses``
    counts the answers measured by status; ``errors`` those that were not 200."""
    latencies: list[float] = []
    statuses: Counter[int] = Counter()
    async with httpx.AsyncClient(
        base_url=url, timeout=120, limits=httpx.Limits(max_connections=clients)
    ) as http:
        measure_from = time.perf_counter() + warmup_s
        stop_at = measure_from + duration_s
        sent = itertools.count()

        async def client() -> None:
            while time.perf_counter() < stop_at:
                files = [
                    ("images", (f"{i}.jpg", payloads[next(sent) % len(payloads)], "image/jpeg"))
                    for i in range(per_request)
                ]
                start = time.perf_counter()
                response = await http.post("/v1/detect", params=params, files=files)
                if start < measure_from:
                    continue
                statuses[response.status_code] += 1
                if response.status_code == 200:
                    latencies.append(time.perf_counter() - start)

        async def metrics_at_start() -> dict[str, float]:
            await asyncio.sleep(max(0.0, measure_from - time.perf_counter()))
            return await metric_totals(url)

        *_, before = await asyncio.gather(*(client() for _ in range(clients)), metrics_at_start())
        elapsed = time.perf_counter() - measure_from
        after = await metric_totals(url)
    ms = np.array(latencies or [np.nan]) * 1000  # no answer in time: no percentiles
    return {
        "server": server_means({name: after[name] - before.get(name, 0.0) for name in after}),
        "images_per_s": len(latencies) * per_request / elapsed,
        "p50_ms": float(np.percentile(ms, 50)),
        "p95_ms": float(np.percentile(ms, 95)),
        "p99_ms": float(np.percentile(ms, 99)),
        "requests": len(latencies),
        "errors": sum(count for status, count in statuses.items() if status != 200),
        "statuses": dict(statuses),
    }


async def metric_totals(url: str) -> dict[str, float]:
    """The server's histogram sums and counts, over all labels (on a connection of its
    own: the clients keep theirs busy)."""
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        metrics = (await http.get("/metrics")).text
    totals: dict[str, float] = {}
    for family in text_string_to_metric_families(metrics):
        for sample in family.samples:
            if sample.name.endswith(("_sum", "_count")) and sample.name.startswith("extd_"):
                totals[sample.name] = totals.get(sample.name, 0.0) + sample.value
    return totals


def server_means(totals: dict[str, float]) -> dict[str, float]:
    """Mean batch size and per-stage times (ms) from histogram sums and counts."""

    def mean(name: str, scale: float = 1000.0) -> float:
        count = totals.get(f"{name}_count", 0.0)
        return round(totals.get(f"{name}_sum", 0.0) / count * scale, 2) if count else 0.0

    return {
        "batch_size": mean("extd_batch_size", 1.0),
        "queue_wait_ms": mean("extd_queue_wait_seconds"),
        "decode_ms": mean("extd_preprocess_duration_seconds"),
        "inference_ms_per_batch": mean("extd_inference_duration_seconds"),
    }
