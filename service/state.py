"""Everything a running app holds, in one typed object (``app.state.service``).

Routes reach it only through the dependencies in :mod:`service.dependencies`;
tests replace parts of it with ``app.dependency_overrides``.
"""

from __future__ import annotations

from dataclasses import dataclass

from starlette.applications import Starlette

from service.auth import ApiKeys, FailureThrottle
from service.config import Settings
from service.jobs import JobStore
from service.lifecycle import Lifecycle
from service.metrics import Metrics
from service.pipeline import Pipeline


@dataclass
class ServiceState:
    settings: Settings
    metrics: Metrics
    lifecycle: Lifecycle
    api_keys: ApiKeys
    failures: FailureThrottle
    pipeline: Pipeline | None = None  # set once the worker runs (lifespan start)
    jobs: JobStore | None = None  # set with the pipeline


def service_state(app: Starlette) -> ServiceState:
    return app.state.service
