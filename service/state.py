"""Everything a running app holds, in one typed object (``app.state.service``).

Routes reach it only through the dependencies in :mod:`service.dependencies`;
tests replace parts of it with ``app.dependency_overrides``.
"""

from __future__ import annotations

from dataclasses import dataclass

from starlette.applications import Starlette

from service.auth import ApiKeys, FailureThrottle
from service.config import Settings
from service.jobs.store import JobStore
from service.lifecycle import Lifecycle
from service.metrics import Metrics
from service.pipeline import Pipeline
from service.remote import RemotePipeline


@dataclass
class ServiceState:
    settings: Settings
    metrics: Metrics
    lifecycle: Lifecycle
    api_keys: ApiKeys
    failures: FailureThrottle
    # The inference process's socket, in an HTTP worker of the several-process layout.
    inference_socket: str | None = None
    # Set once the worker runs (lifespan start); a RemotePipeline in an HTTP worker.
    pipeline: Pipeline | RemotePipeline | None = None
    jobs: JobStore | None = None  # set once the models are ready


def service_state(app: Starlette) -> ServiceState:
    return app.state.service
