"""What every serving process builds from its settings: the models, the one Batcher that runs
them, and the video jobs' store; the :class:`Engine` of a process that serves photos.

The API process (:mod:`service.app`), the inference process of the several-process
layout (:mod:`service.inference`) and the job worker (:mod:`service.worker`) are put
together from these, so all load, run and account for models the same way.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable

import torch

from model.backends.compiled import INDUCTOR_CACHE_VARIABLE, compile_cache
from model.checkpoint import Checkpoint
from model.detector import Detector
from model.errors import CheckpointError, WeightsError
from model.runtime import tune_allocator
from model.video import VideoLimits
from model.weights import pull
from service.batching import Batcher
from service.config import Settings
from service.jobs.runner import JobRunner
from service.jobs.store import JobLimits, JobStore, open_queue
from service.metrics import Metrics
from service.pipeline import Pipeline
from service.registry import LoadedModel, ModelRegistry

log = logging.getLogger(__name__)


class StartupError(RuntimeError):
    """The service cannot serve: no model, or the default model is missing."""


def tune_process(settings: Settings) -> None:
    """The allocator, threads and compile cache of a process that runs models."""
    tune_allocator(settings.tune_allocator)
    if settings.torch_threads:
        torch.set_num_threads(settings.torch_threads)
    os.environ.setdefault(INDUCTOR_CACHE_VARIABLE, str(compile_cache(settings.runtime())))


def build_registry(settings: Settings, metrics: Metrics) -> ModelRegistry:
    """The weights folder's models, built as the settings say; loads and drops counted."""

    runtime = settings.runtime()

    def build(checkpoint: Checkpoint) -> Detector:
        return Detector(
            checkpoint,
            device=settings.device,
            backend=settings.backend,
            bucket_step=settings.bucket_step,
            batch_size=settings.max_batch_size,
            batch_pixels=settings.max_batch_pixels,
            runtime=runtime,
        )

    def publish(
        added: list[LoadedModel], dropped: list[LoadedModel], refused: dict[str, str]
    ) -> None:
        for model in dropped:
            metrics.model_info.remove(*_info_labels(model))
        replaced = {model.name: model.variant for model in dropped}
        for model in added:
            metrics.model_info.labels(*_info_labels(model)).set(1)
            metrics.start_model_series(model.name)
            if replaced.get(model.name, model.variant) != model.variant:
                metrics.variant_changes.labels(model.name).inc()
        metrics.model_loads.labels("loaded").inc(len(added))
        metrics.model_loads.labels("refused").inc(len(refused))
        for model in registry.all():
            metrics.model_file_missing.labels(model.name).set(model.name in registry.missing_files)

    registry = ModelRegistry(
        settings.weights_dir,
        build,
        default=settings.default_model,
        warm_sizes=settings.warm_sizes,
        on_change=publish,
    )
    return registry


def _info_labels(model: LoadedModel) -> tuple[str, str, str, str, str]:
    return model.name, model.variant, model.sha256, model.backend, model.device


def load_models(
    settings: Settings, registry: ModelRegistry, warming: Callable[[], None] | None = None
) -> None:
    """Pull the released weights into an empty folder and load every model; with
    ``warming`` (told when it starts), warm the default model's shapes."""
    if settings.pull_missing and not registry.checkpoint_files():
        log.info("no checkpoints in %s: pulling the released ones", settings.weights_dir)
        pull(runtime=settings.runtime())
    registry.refresh(warm=False)
    if not registry.all():
        raise StartupError(f"no model could be loaded from {settings.weights_dir}")
    default = registry.default_name
    if registry.get(default) is None:
        raise StartupError(f"the default model {default!r} is not in {settings.weights_dir}")
    if warming is not None:
        warming()
        registry.warm()


def build_batcher(settings: Settings, metrics: Metrics, registry: ModelRegistry) -> Batcher:
    """The process's one model runner (started)."""
    batcher = Batcher(
        max_batch_size=settings.max_batch_size,
        max_batch_delay_s=settings.max_batch_delay_ms / 1000,
        capacity=settings.queue_size,
        metrics=metrics,
        steady_shapes=lambda: registry.warm_shapes,
        release_idle_s=settings.release_idle_s,
    )
    batcher.start()
    return batcher


def build_job_store(settings: Settings) -> JobStore:
    limits = JobLimits(
        max_queued=settings.max_queued_jobs,
        max_attempts=settings.job_max_attempts,
        lease_s=settings.job_lease_s,
        retention_s=settings.job_retention_s,
    )
    return JobStore(open_queue(settings.queue_url, settings.jobs_dir), settings.jobs_dir, limits)


def video_limits(settings: Settings) -> VideoLimits:
    """What an uploaded video may hold: its duration, and frames no larger than a photo."""
    return VideoLimits(max_seconds=settings.max_video_seconds, max_pixels=settings.max_image_pixels)


class Engine:
    """The models, the one Batcher, the pipeline in front of it and this process's share of
    the video jobs. Built at once; the models load in a background thread (:meth:`load`), so
    an HTTP port can open before they are ready."""

    def __init__(self, settings: Settings, metrics: Metrics) -> None:
        tune_process(settings)
        self.settings = settings
        self.registry = build_registry(settings, metrics)
        self.batcher = build_batcher(settings, metrics, self.registry)
        self.pipeline = Pipeline(settings, self.registry, self.batcher, metrics)
        self.jobs = build_job_store(settings)
        self.runner = JobRunner(
            self.jobs,
            self.registry,
            self.batcher,
            metrics,
            workers=settings.job_workers,
            limits=video_limits(settings),
        )
        self._stop_watching = threading.Event()

    def load(
        self,
        *,
        warming: Callable[[], None],
        ready: Callable[[], None],
        failed: Callable[[str], None],
    ) -> None:
        """Load and warm the models in a daemon thread (a stop need not wait for it), then
        watch the weights folder and run jobs. The callbacks are called from that thread."""

        def load() -> None:
            try:
                load_models(self.settings, self.registry, warming)
            except (StartupError, WeightsError, CheckpointError) as error:
                failed(str(error))
                return
            except Exception as error:  # anything else must stop the service too, not hang it
                log.exception("loading the models failed")
                failed(f"loading the models failed: {error}")
                return
            if self.settings.watch_weights:
                self.registry.watch(self.settings.watch_interval_s, self._stop_watching)
            self.runner.start()
            log.info(
                "ready: models %s, default %s",
                [model.name for model in self.registry.all()],
                self.registry.default_name,
            )
            ready()

        threading.Thread(target=load, name="model-loader", daemon=True).start()

    def stop(self) -> None:
        """Stop watching and running jobs (a running one is queued again), finish the queued
        photos, close the decoders."""
        self._stop_watching.set()
        self.runner.stop(self.settings.drain_timeout_s)
        self.batcher.stop(self.settings.drain_timeout_s)
        self.pipeline.close()
