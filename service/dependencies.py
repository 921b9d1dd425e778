"""FastAPI dependencies: what a route needs from the running app, and admin authentication.

Routes declare these in their signatures (``pipeline: PipelineDep``) instead
of reaching into ``app.state``; a route that needs the models answers 503
``not_ready`` until they are loaded.
"""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from service.config import Settings
from service.lifecycle import Lifecycle
from service.metrics import Metrics
from service.pipeline import Pipeline
from service.problems import RETRY, ProblemError
from service.registry import ModelRegistry


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


def get_metrics(request: Request) -> Metrics:
    return request.app.state.metrics


def get_lifecycle(request: Request) -> Lifecycle:
    return request.app.state.lifecycle


def get_pipeline(request: Request) -> Pipeline:
    """The pipeline, once the models are loaded and warm (stopping still serves accepted work)."""
    lifecycle: Lifecycle = request.app.state.lifecycle
    if lifecycle.phase in ("loading", "warming", "failed"):
        raise ProblemError(
            503, "not_ready", f"not ready: {lifecycle.phase}", headers=RETRY, reason=lifecycle.phase
        )
    return request.app.state.pipeline


def get_registry(pipeline: Annotated[Pipeline, Depends(get_pipeline)]) -> ModelRegistry:
    return pipeline.registry


SettingsDep = Annotated[Settings, Depends(get_settings)]
MetricsDep = Annotated[Metrics, Depends(get_metrics)]
LifecycleDep = Annotated[Lifecycle, Depends(get_lifecycle)]
PipelineDep = Annotated[Pipeline, Depends(get_pipeline)]
RegistryDep = Annotated[ModelRegistry, Depends(get_registry)]

admin_bearer = HTTPBearer(
    scheme_name="adminToken",
    description="EXTD_ADMIN_TOKEN; admin endpoints are disabled while it is unset",
    auto_error=False,
)


def require_admin(
    settings: SettingsDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(admin_bearer)],
) -> None:
    """Admin endpoints need ``Authorization: Bearer <EXTD_ADMIN_TOKEN>``; 404 while unset."""
    token = settings.admin_token
    if token is None:
        raise ProblemError(404, "admin_disabled", "set EXTD_ADMIN_TOKEN to enable admin endpoints")
    given = credentials.credentials if credentials else ""
    if not secrets.compare_digest(given.encode(), token.get_secret_value().encode()):
        raise ProblemError(
            401,
            "unauthorized",
            "missing or wrong bearer token",
            headers={"WWW-Authenticate": "Bearer"},
        )


AdminDep = Depends(require_admin)
