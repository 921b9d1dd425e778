"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from service.dependencies import MetricsDep, PipelineDep
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
async def readyz(request: Request, pipeline: PipelineDep) -> dict[str, object]:
    if not request.app.state.ready:
        raise ProblemError(503, "not_ready", "the service is stopping")
    return {"status": "ready", "models": [m.name for m in pipeline.registry.all()]}


@router.get("/metrics", response_class=Response, summary="Prometheus metrics")
async def metrics(metrics: MetricsDep) -> Response:
    body, content_type = metrics.render()
    return Response(body, media_type=content_type)
