"""Every Prometheus metric the service exports, declared in one place.

Each app gets its own registry, so several apps (tests) can live in one
process. Names follow Prometheus conventions: base units, ``_total`` on
counters.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    gc_collector,
    generate_latest,
    multiprocess,
    platform_collector,
    process_collector,
)

# The *_created series only double the exposition; dashboards never use them.
disable_created_metrics()

# Fine between 0.1 and 1 s, where a CPU replica's latencies are (a p95 read off these stays
# within about 25 % of the clients' own).
LATENCY_BUCKETS = (
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.75,
    1.0, 1.5, 2.5, 5.0, 10.0, 30.0,
)  # fmt: skip
# Why queued images are dropped before inference (Batcher).
CANCEL_REASONS = ("deadline", "disconnected", "stopping")
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)
FACE_BUCKETS = (0, 1, 2, 5, 10, 20, 50, 100, 200, 500)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        process_collector.ProcessCollector(registry=self.registry)
        platform_collector.PlatformCollector(registry=self.registry)
        gc_collector.GCCollector(registry=self.registry)
        r = self.registry
        self.requests = Counter(
            "extd_http_requests_total",
            "HTTP requests by route and status",
            ["route", "method", "status"],
            registry=r,
        )
        self.request_duration = Histogram(
            "extd_http_request_duration_seconds",
            "HTTP request latency",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.preprocess_duration = Histogram(
            "extd_preprocess_duration_seconds",
            "Decoding and sizing one image",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.queue_wait = Histogram(
            "extd_queue_wait_seconds",
            "Time an image waits for its batch",
            ["model"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.inference_duration = Histogram(
            "extd_inference_duration_seconds",
            "One forward pass plus post-processing",
            ["model"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.batch_size = Histogram(
            "extd_batch_size",
            "Images per forward pass",
            ["model"],
            buckets=BATCH_BUCKETS,
            registry=r,
        )
        self.queue_depth = Gauge("extd_queue_depth", "Images waiting for the worker", registry=r)
        self.faces_per_image = Histogram(
            "extd_faces_per_image",
            "Faces returned per image",
            ["model"],
            buckets=FACE_BUCKETS,
            registry=r,
        )
        self.images = Counter("extd_images_total", "Images detected", ["model"], registry=r)
        self.decodes_abandoned = Counter(
            "extd_decodes_abandoned_total",
            "Decodes stopped at their request's deadline (the decoder process was replaced)",
            registry=r,
        )
        self.rejected = Counter(
            "extd_rejected_total", "Requests refused, by reason", ["reason"], registry=r
        )
        self.cancelled = Counter(
            "extd_cancelled_total",
            "Queued images dropped before inference, by reason",
            ["reason"],
            registry=r,
        )
        self.model_info = Gauge(
            "extd_model_info",
            "Loaded models (value 1)",
            ["name", "variant", "sha256", "backend", "device"],
            registry=r,
        )
        self.model_loads = Counter(
            "extd_model_loads_total",
            "Checkpoint loads (start-up and reloads), by result",
            ["result"],
            registry=r,
        )
        self.variant_changes = Counter(
            "extd_model_variant_changes_total",
            "A checkpoint replaced by one of another variant under the same name",
            ["name"],
            registry=r,
        )
        self.jobs = Counter(
            "extd_jobs_total", "Video jobs finished, by state", ["state"], registry=r
        )
        self.jobs_queued = Gauge("extd_jobs_queued", "Video jobs waiting to run", registry=r)
        self.video_frames = Counter(
            "extd_video_frames_total", "Video frames anonymized by jobs", registry=r
        )
        self.model_file_missing = Gauge(
            "extd_model_file_missing",
            "1 while a loaded model's file is gone (the default keeps serving from memory)",
            ["name"],
            registry=r,
        )
        self.api_requests = Counter(
            "extd_api_requests_total",
            "Requests accepted per API key (named by its hash's first 12 hex digits)",
            ["key"],
            registry=r,
        )
        self.ready = Gauge("extd_ready", "1 when models are loaded and warmed up", registry=r)

    def start_series(self, rejected: Iterable[str]) -> None:
        """Create the labelled series that exist from the start at 0, so dashboards show
        "none yet" instead of "no data": refusals by reason, cancellations, load results."""
        for reason in rejected:
            self.rejected.labels(reason)
        for reason in CANCEL_REASONS:
            self.cancelled.labels(reason)
        for result in ("loaded", "refused"):
            self.model_loads.labels(result)
        for state in ("done", "failed", "cancelled"):
            self.jobs.labels(state)

    def start_model_series(self, model: str) -> None:
        """The per-model series of a model just loaded, at 0."""
        for family in (
            self.images,
            self.queue_wait,
            self.inference_duration,
            self.batch_size,
            self.faces_per_image,
            self.variant_changes,
        ):
            family.labels(model)

    def render(self) -> tuple[bytes, str]:
        """This process's metrics; in the several-process layout, every process's values added
        up (the supervisor sets ``PROMETHEUS_MULTIPROC_DIR`` for them all)."""
        if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            return generate_latest(self.registry), CONTENT_TYPE_LATEST
        together = CollectorRegistry()
        multiprocess.MultiProcessCollector(together)
        return generate_latest(together), CONTENT_TYPE_LATEST
