"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from service.problems import ProblemError
from service.schemas import Problem

router = APIRouter(tags=["operations"])


@router.get("/livez", summary="The process is up")
async def livez() -> dict[str, str]:
    return {"status": "ok"}


@router.get(
    "/readyz",
    responses={503: {"model": Problem}},
    summary="Models are loaded and warmed up, and the worker takes requests",
)
async def readyz(request: Request) -> dict[str, object]:
    state = request.app.state
    if not state.ready:
        raise ProblemError(503, "not_ready", "models are still loading, or the service is stopping")
    return {"status": "ready", "models": [m.name for m in state.registry.all()]}


@router.get("/metrics", response_class=Response, summary="Prometheus metrics")
async def metrics(request: Request) -> Response:
    body, content_type = request.app.state.metrics.render()
    return Response(body, media_type=content_type)
