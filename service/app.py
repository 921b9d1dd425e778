"""The FastAPI application: wiring of settings, models, batching worker and routes."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from importlib.metadata import version
from typing import Any

import torch
from fastapi import FastAPI
from fastapi_offline import FastAPIOffline

from model.checkpoint import Checkpoint
from model.detector import Detector
from model.errors import CheckpointError, WeightsError
from model.runtime import tune_allocator
from model.weights import pull
from service.auth import ApiKeys, FailureThrottle, read_key_hashes
from service.batching import Batcher
from service.config import Settings
from service.jobs import JobRunner, JobStore
from service.lifecycle import Lifecycle, Phase
from service.metrics import Metrics
from service.middleware import (
    BODY_TOO_LARGE,
    HEADERS_TOO_LARGE,
    DrainMiddleware,
    LimitsMiddleware,
    MetricsMiddleware,
)
from service.pipeline import Pipeline
from service.problems import MEDIA_TYPE, REFUSALS, install_problem_handlers
from service.registry import LoadedModel, ModelRegistry
from service.routes import admin, anonymize, deepstack, detect, health, jobs, models, web
from service.state import ServiceState, service_state

log = logging.getLogger(__name__)

DESCRIPTION = """Face detection with EXTD, the Extremely Tiny Face Detector.

POST images to `/v1/detect`; requests are queued and batched dynamically.
Errors are RFC 9457 problem documents with a stable `code`.
"""


def _registry(settings: Settings, metrics: Metrics) -> ModelRegistry:
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


class StartupError(RuntimeError):
    """The service cannot serve: no model, or the default model is missing."""


def _load_models(
    settings: Settings, registry: ModelRegistry, enter: Callable[[Phase], None]
) -> None:
    """Pull the released weights into an empty folder, load every model, then warm them."""
    if settings.pull_missing and not registry.checkpoint_files():
        log.info("no checkpoints in %s: pulling the released ones", settings.weights_dir)
        pull(directory=settings.weights_dir, mirror=settings.weights_mirror)
    registry.refresh(warm=False)
    if not registry.all():
        raise StartupError(f"no model could be loaded from {settings.weights_dir}")
    default = registry.default_name
    if registry.get(default) is None:
        raise StartupError(f"the default model {default!r} is not in {settings.weights_dir}")
    enter("warming")
    registry.warm()


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Start the worker and load the models in the background: the port opens at once."""
    state = service_state(app)
    settings, metrics, lifecycle = state.settings, state.metrics, state.lifecycle
    tune_allocator(settings.tune_allocator)
    if settings.torch_threads:
        torch.set_num_threads(settings.torch_threads)
    registry = _registry(settings, metrics)
    batcher = Batcher(
        max_batch_size=settings.max_batch_size,
        max_batch_delay_s=settings.max_batch_delay_ms / 1000,
        capacity=settings.queue_size,
        metrics=metrics,
        steady_shapes=lambda: registry.warm_shapes,
        release_idle_s=settings.release_idle_s,
    )
    batcher.start()
    state.pipeline = pipeline = Pipeline(settings, registry, batcher, metrics)
    job_store = JobStore(settings.jobs_dir)
    runner = JobRunner(
        job_store,
        registry,
        metrics,
        retention_s=settings.job_retention_s,
        photos_waiting=lambda: batcher.waiting,
    )
    loop = asyncio.get_running_loop()
    stop_watching = threading.Event()

    def ready() -> None:
        if settings.watch_weights:
            registry.watch(settings.watch_interval_s, stop_watching)
        state.jobs = job_store
        runner.start()
        lifecycle.enter("ready")
        log.info(
            "ready: models %s, default %s", [m.name for m in registry.all()], registry.default_name
        )

    def load() -> None:
        try:
            _load_models(
                settings, registry, lambda phase: loop.call_soon_threadsafe(lifecycle.enter, phase)
            )
        except (StartupError, WeightsError, CheckpointError) as error:
            loop.call_soon_threadsafe(lifecycle.fail, str(error))
        except Exception as error:  # anything else must stop the service too, not hang it
            log.exception("loading the models failed")
            loop.call_soon_threadsafe(lifecycle.fail, f"loading the models failed: {error}")
        else:
            loop.call_soon_threadsafe(ready)

    # A daemon thread: a stop while loading need not wait for the load to end.
    threading.Thread(target=load, name="model-loader", daemon=True).start()
    try:
        yield
    finally:
        stop_watching.set()
        await asyncio.to_thread(runner.stop, settings.drain_timeout_s)
        await asyncio.to_thread(batcher.stop, settings.drain_timeout_s)
        pipeline.close()
        log.info("stopped")


def _problems_as_problem_json(app: FastAPI) -> Callable[[], dict[str, Any]]:
    """The OpenAPI document with every error body under ``application/problem+json``,
    the media type the server sends (FastAPI files response models under JSON)."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = generate()
            for operation in (o for path in schema["paths"].values() for o in path.values()):
                for status, response in operation.get("responses", {}).items():
                    content = response.get("content", {})
                    if status[0] in "45" and "application/json" in content:
                        content[MEDIA_TYPE] = content.pop("application/json")
        return app.openapi_schema

    return openapi


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    metrics = Metrics()
    # Swagger UI and ReDoc from the package's own assets: the docs work offline.
    app = FastAPIOffline(
        title="EXTD face detection",
        version=version("extd-face"),
        description=DESCRIPTION,
        lifespan=lifespan,
    )
    app.openapi = _problems_as_problem_json(app)
    metrics.start_series(
        {answer.counted_as for answer in REFUSALS.values() if answer.counted_as}
        | {BODY_TOO_LARGE, HEADERS_TOO_LARGE}
    )
    lifecycle = Lifecycle(metrics)
    app.state.service = ServiceState(
        settings=settings,
        metrics=metrics,
        lifecycle=lifecycle,
        api_keys=ApiKeys(
            read_key_hashes(
                settings.api_keys.get_secret_value() if settings.api_keys else None,
                settings.api_keys_file,
            ),
            rate_per_s=settings.api_rate_per_s,
            burst=settings.api_burst,
        ),
        failures=FailureThrottle(),
    )
    install_problem_handlers(app)
    routers = (detect, deepstack, anonymize, jobs, models, admin, health)
    for router in (module.router for module in routers):
        app.include_router(router)
    if settings.web_ui:
        web.install(app)
    app.add_middleware(
        LimitsMiddleware,
        max_header_bytes=settings.max_header_bytes,
        max_body_bytes=settings.max_body_bytes,
        max_video_bytes=settings.max_video_bytes,
        metrics=metrics,
    )
    app.add_middleware(DrainMiddleware, lifecycle=lifecycle)
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    return app
