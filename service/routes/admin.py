"""Admin endpoints, behind ``EXTD_ADMIN_TOKEN`` (not the API keys)."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter

from service.dependencies import AdminDep, RegistryDep
from service.schemas import ReloadResponse, problem_responses

router = APIRouter(tags=["admin"], dependencies=[AdminDep])


@router.post(
    "/v1/admin/reload",
    response_model=ReloadResponse,
    responses=problem_responses(
        {
            401: "missing or wrong admin token",
            404: "admin endpoints are disabled",
            429: "too many wrong tokens from this address (see Retry-After)",
        }
    ),
    summary="Load new or changed checkpoints from the weights folder now",
)
async def reload_models(registry: RegistryDep) -> ReloadResponse:
    """A checkpoint that fails validation is refused; the model it would replace keeps serving."""
    report = await asyncio.to_thread(registry.refresh)
    return ReloadResponse(
        loaded=report.loaded,
        refused=report.refused,
        removed=report.removed,
        models=[m.name for m in registry.describe()],
    )
