"""FastAPI dependencies: what a route needs from the running app, and admin authentication.

Routes declare these in their signatures (``pipeline: PipelineDep``); only
:func:`get_state` reaches into ``app.state``. A route that needs the models
answers 503 ``not_ready`` until they are loaded. Tests swap any of these with
``app.dependency_overrides``.
"""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from service.auth import ApiKeys, FailureThrottle, retry_after
from service.config import Settings
from service.jobs.store import JobStore
from service.lifecycle import Lifecycle
from service.metrics import Metrics
from service.pipeline import Pipeline
from service.problems import RETRY, ProblemError
from service.registry import ModelRegistry
from service.state import ServiceState, service_state


def get_state(request: Request) -> ServiceState:
    return service_state(request.app)


StateDep = Annotated[ServiceState, Depends(get_state)]


def get_settings(state: StateDep) -> Settings:
    return state.settings


def get_metrics(state: StateDep) -> Metrics:
    return state.metrics


def get_lifecycle(state: StateDep) -> Lifecycle:
    return state.lifecycle


def get_pipeline(state: StateDep) -> Pipeline:
    """The pipeline, once the models are loaded and warm (stopping still serves accepted work)."""
    phase = state.lifecycle.phase
    if phase in ("loading", "warming", "failed") or state.pipeline is None:
        raise ProblemError(503, "not_ready", f"not ready: {phase}", headers=RETRY, reason=phase)
    return state.pipeline


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


api_bearer = HTTPBearer(
    scheme_name="apiKey",
    description="an API key (EXTD_API_KEYS); needed only when keys are configured",
    auto_error=False,
)
KEY_PLACES = "Authorization: Bearer, X-API-Key, or the api_key form field of DeepStack routes"
api_key_header = APIKeyHeader(
    name="X-API-Key",
    scheme_name="apiKeyHeader",
    description="the same API key, in a header of its own",
    auto_error=False,
)


def _client(request: Request) -> str:
    """The client's address: the socket peer, or what a trusted proxy (EXTD_FORWARDED_ALLOW_IPS)
    says it forwarded for."""
    return request.client.host if request.client else "unknown"


def _refused_token(request: Request, failures: FailureThrottle, detail: str) -> ProblemError:
    """A wrong or missing token: 401, or 429 once this address has sent too many. Only
    failures count, so a right token is never held up by someone else's wrong ones."""
    client = _client(request)
    wait = failures.wait(client)
    if wait:
        return ProblemError(
            429,
            "rate_limited",
            "too many wrong tokens from this address: wait before trying again",
            headers=retry_after(wait),
        )
    failures.failed(client)
    return ProblemError(401, "unauthorized", detail, headers={"WWW-Authenticate": "Bearer"})


def require_admin(
    request: Request,
    state: StateDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(admin_bearer)],
) -> None:
    """Admin endpoints need ``Authorization: Bearer <EXTD_ADMIN_TOKEN>``; 404 while unset."""
    token = state.settings.admin_token
    if token is None:
        raise ProblemError(404, "admin_disabled", "set EXTD_ADMIN_TOKEN to enable admin endpoints")
    given = credentials.credentials if credentials else ""
    if not secrets.compare_digest(given.encode(), token.get_secret_value().encode()):
        raise _refused_token(request, state.failures, "missing or wrong admin bearer token")


def check_api_key(request: Request, state: ServiceState, presented: str) -> str | None:
    """With API keys configured, ``presented`` must be one, within its rate limit; returns
    its name (None without keys)."""
    keys: ApiKeys = state.api_keys
    if not keys.enabled:
        return None
    key = keys.identify(presented)
    if key is None:
        raise _refused_token(request, state.failures, f"missing or wrong API key ({KEY_PLACES})")
    wait = keys.take(key)
    if wait:
        raise ProblemError(
            429,
            "rate_limited",
            f"API key {key} is over its rate of {keys.rate_per_s:g} requests a second",
            headers=retry_after(wait),
        )
    state.metrics.api_requests.labels(key).inc()
    return key


def presented_key(
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(api_bearer)],
    header: Annotated[str | None, Depends(api_key_header)],
) -> str:
    return header or (bearer.credentials if bearer else "")


def require_api_key(
    request: Request, state: StateDep, presented: Annotated[str, Depends(presented_key)]
) -> str | None:
    """A valid key in ``Authorization: Bearer`` or ``X-API-Key`` (when keys are configured);
    its name, for what a key owns (video jobs)."""
    return check_api_key(request, state, presented)


def require_metrics_key(
    request: Request, state: StateDep, presented: Annotated[str, Depends(presented_key)]
) -> None:
    """``/metrics`` asks for an API key only with ``EXTD_PROTECT_METRICS``."""
    if state.settings.protect_metrics:
        check_api_key(request, state, presented)


def get_jobs(state: StateDep) -> JobStore:
    """The video jobs, once the models are loaded."""
    if state.jobs is None:
        phase = state.lifecycle.phase
        raise ProblemError(503, "not_ready", f"not ready: {phase}", headers=RETRY, reason=phase)
    return state.jobs


AdminDep = Depends(require_admin)
ApiKeyDep = Depends(require_api_key)
KeyNameDep = Annotated[str | None, Depends(require_api_key)]
JobsDep = Annotated[JobStore, Depends(get_jobs)]
