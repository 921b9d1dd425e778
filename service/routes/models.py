"""Loaded models, and the admin endpoint that reloads the weights folder."""

from __future__ import annotations

import asyncio
import secrets

from fastapi import APIRouter, Request

from service.problems import ProblemError
from service.registry import ModelRegistry
from service.schemas import ModelInfo, ModelList, Problem, ReloadResponse

router = APIRouter(tags=["models"])


def _registry(request: Request) -> ModelRegistry:
    return request.app.state.registry


@router.get("/v1/models", response_model=ModelList, summary="The loaded models")
async def list_models(request: Request) -> ModelList:
    registry = _registry(request)
    default = registry.default_name
    return ModelList(
        models=[ModelInfo(**m.info, default=m.name == default) for m in registry.all()]
    )


@router.post(
    "/v1/admin/reload",
    response_model=ReloadResponse,
    responses={401: {"model": Problem}, 404: {"model": Problem}},
    summary="Load new or changed checkpoints from the weights folder now",
)
async def reload_models(request: Request) -> ReloadResponse:
    """Needs ``Authorization: Bearer <EXTD_ADMIN_TOKEN>``; disabled when no token is set.

    A checkpoint that fails validation is refused and the model it would
    replace keeps serving.
    """
    token = request.app.state.settings.admin_token
    if token is None:
        raise ProblemError(404, "admin_disabled", "set EXTD_ADMIN_TOKEN to enable admin endpoints")
    given = request.headers.get("authorization", "")
    expected = f"Bearer {token.get_secret_value()}"
    if not secrets.compare_digest(given.encode(), expected.encode()):
        raise ProblemError(
            401,
            "unauthorized",
            "missing or wrong bearer token",
            headers={"WWW-Authenticate": "Bearer"},
        )
    registry = _registry(request)
    report = await asyncio.to_thread(registry.refresh)
    return ReloadResponse(
        loaded=report.loaded,
        refused=report.refused,
        removed=report.removed,
        models=[m.name for m in registry.all()],
    )
