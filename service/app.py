"""The FastAPI application: wiring of settings, models, batching worker and routes."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from importlib.metadata import version
from typing import Any

from fastapi import FastAPI
from fastapi_offline import FastAPIOffline

from service.auth import ApiKeys, FailureThrottle, read_key_hashes
from service.components import Engine
from service.config import Settings
from service.lifecycle import Lifecycle
from service.metrics import Metrics
from service.middleware import (
    BODY_TOO_LARGE,
    HEADERS_TOO_LARGE,
    DrainMiddleware,
    LimitsMiddleware,
    MetricsMiddleware,
)
from service.problems import MEDIA_TYPE, REFUSALS, install_problem_handlers
from service.remote import RemoteEngine
from service.routes import admin, anonymize, deepstack, detect, health, jobs, models, web
from service.state import ServiceState, service_state

log = logging.getLogger(__name__)

DESCRIPTION = """Face detection with EXTD, the Extremely Tiny Face Detector.

POST images to `/v1/detect`; requests are queued and batched dynamically.
Errors are RFC 9457 problem documents with a stable `code`.
"""


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Start the worker and load the models in the background: the port opens at once."""
    state = service_state(app)
    lifecycle = state.lifecycle
    engine = (
        RemoteEngine(state.settings, state.inference_socket)
        if state.inference_socket
        else Engine(state.settings, state.metrics)
    )
    state.pipeline = engine.pipeline
    loop = asyncio.get_running_loop()

    def ready() -> None:
        state.jobs = engine.jobs
        lifecycle.enter("ready")

    engine.load(
        warming=lambda: loop.call_soon_threadsafe(lifecycle.enter, "warming"),
        ready=lambda: loop.call_soon_threadsafe(ready),
        failed=lambda message: loop.call_soon_threadsafe(lifecycle.fail, message),
    )
    try:
        yield
    finally:
        await asyncio.to_thread(engine.stop)
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


def create_app(settings: Settings | None = None, *, inference_socket: str | None = None) -> FastAPI:
    """The app; with ``inference_socket``, an HTTP worker whose models run in the inference
    process listening there (:mod:`service.fleet`)."""
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
        inference_socket=inference_socket,
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
