"""Loaded models, and the admin endpoint that reloads the weights folder."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter

from service.dependencies import AdminDep, RegistryDep
from service.schemas import ModelInfo, ModelList, ReloadResponse, problem_responses

router = APIRouter(tags=["models"])


@router.get(
    "/v1/models",
    response_model=ModelList,
    responses=problem_responses({503: "not ready yet"}),
    summary="The loaded models",
)
async def list_models(registry: RegistryDep) -> ModelList:
    default = registry.default_name
    return ModelList(
        models=[
            ModelInfo(
                name=m.name,
                variant=m.variant,
                parameters=m.parameters,
                source=m.detector.checkpoint.source,
                sha256=m.sha256,
                file=m.path.name,
                backend=m.backend,
                device=m.device,
                default=m.name == default,
                training=m.detector.checkpoint.training,
            )
            for m in registry.all()
        ]
    )


@router.post(
    "/v1/admin/reload",
    response_model=ReloadResponse,
    responses=problem_responses(
        {401: "missing or wrong admin token", 404: "admin endpoints are disabled"}
    ),
    dependencies=[AdminDep],
    summary="Load new or changed checkpoints from the weights folder now",
)
async def reload_models(registry: RegistryDep) -> ReloadResponse:
    """A checkpoint that fails validation is refused; the model it would replace keeps serving."""
    report = await asyncio.to_thread(registry.refresh)
    return ReloadResponse(
        loaded=report.loaded,
        refused=report.refused,
        removed=report.removed,
        models=[m.name for m in registry.all()],
    )
