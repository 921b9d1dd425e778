"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Response

from service.dependencies import MetricsDep, StateDep, require_metrics_key
from service.problems import RETRY, ProblemError
from service.schemas import problem_responses

router = APIRouter(tags=["operations"])

REASONS = {
    "loading": "the models are loading",
    "warming": "the models are warming up at the configured sizes",
    "stopping": "the service is stopping; accepted requests are finishing",
    "failed": "the service could not start; see its log",
}


@router.get("/livez", summary="The process is up (answers from the first second)")
async def livez() -> dict[str, str]:
    return {"status": "ok"}


@router.get(
    "/readyz",
    responses=problem_responses({503: "loading, warming or stopping (see reason)"}),
    summary="Models are loaded and warmed up, and the worker takes requests",
)
async def readyz(state: StateDep) -> dict[str, object]:
    """503 ``not_ready`` with ``reason`` ``loading``, ``warming`` or ``stopping`` otherwise."""
    lifecycle = state.lifecycle
    if not lifecycle.ready or state.pipeline is None:
        raise ProblemError(
            503,
            "not_ready",
            REASONS[lifecycle.phase],
            headers=RETRY,
            reason=lifecycle.phase,
        )
    return {"status": "ready", "models": [m.name for m in state.pipeline.registry.describe()]}


@router.get(
    "/metrics",
    response_class=Response,
    dependencies=[Depends(require_metrics_key)],
    summary="Prometheus metrics (needs an API key with EXTD_PROTECT_METRICS)",
)
async def metrics(metrics: MetricsDep) -> Response:
    body, content_type = metrics.render()
    return Response(body, media_type=content_type)
