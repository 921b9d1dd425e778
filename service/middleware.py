"""ASGI middleware: request body limit, the drain on shutdown, and per-route HTTP metrics."""

from __future__ import annotations

import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.lifecycle import Lifecycle
from service.metrics import Metrics
from service.problems import RETRY, ProblemError, problem_response

# Paths that do work: counted in flight, refused while stopping. Health and docs stay open.
WORK_PREFIX = "/v1/"
# Video jobs: their uploads have a limit of their own (EXTD_MAX_VIDEO_BYTES).
VIDEO_PREFIX = "/v1/jobs/"
# What the limits refuse, as counted in extd_rejected_total.
BODY_TOO_LARGE, HEADERS_TOO_LARGE = "body_too_large", "headers_too_large"


class LimitsMiddleware:
    """Refuse headers over ``max_header_bytes`` (431) and bodies over their limit (413, by
    Content-Length or while streaming): ``max_body_bytes``, or ``max_video_bytes`` for video
    uploads. The HTTP parser bounds headers too, but only per read; this is the exact
    limit, answered with a problem document."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        max_header_bytes: int,
        max_body_bytes: int,
        max_video_bytes: int,
        metrics: Metrics,
    ) -> None:
        self.app = app
        self.max_header_bytes = max_header_bytes
        self.max_body_bytes = max_body_bytes
        self.max_video_bytes = max_video_bytes
        self.metrics = metrics

    def _limit(self, scope: Scope) -> int:
        videos = scope["path"].startswith(VIDEO_PREFIX)
        return self.max_video_bytes if videos else self.max_body_bytes

    def _error(self, limit: int) -> ProblemError:
        self.metrics.rejected.labels(BODY_TOO_LARGE).inc()
        return ProblemError(413, "body_too_large", f"request body over {limit} bytes", limit=limit)

    def _refusal(self, scope: Scope) -> ProblemError | None:
        header_bytes = sum(len(name) + len(value) + 4 for name, value in scope["headers"])
        if header_bytes > self.max_header_bytes:
            self.metrics.rejected.labels(HEADERS_TOO_LARGE).inc()
            detail = f"request headers of {header_bytes} bytes, over {self.max_header_bytes}"
            return ProblemError(431, "headers_too_large", detail, limit=self.max_header_bytes)
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self._limit(scope):
            return self._error(self._limit(scope))
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if error := self._refusal(scope):
            response = problem_response(
                error.status, error.code, error.detail, instance=scope["path"], **error.extra
            )
            await response(scope, receive, send)
            return
        received, limit = 0, self._limit(scope)

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise self._error(limit)
            return message

        await self.app(scope, limited_receive, send)


class DrainMiddleware:
    """Count API requests in flight; once stopping, refuse new ones with a 503 problem."""

    def __init__(self, app: ASGIApp, *, lifecycle: Lifecycle) -> None:
        self.app = app
        self.lifecycle = lifecycle

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(WORK_PREFIX):
            await self.app(scope, receive, send)
            return
        if self.lifecycle.stopping:
            response = problem_response(
                503,
                "shutting_down",
                "the service is shutting down; try another replica",
                instance=scope["path"],
                headers=RETRY,
            )
            await response(scope, receive, send)
            return
        with self.lifecycle.request():
            await self.app(scope, receive, send)


class MetricsMiddleware:
    """Count requests and time them, labelled by route template (bounded cardinality)."""

    def __init__(self, app: ASGIApp, *, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_with_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_with_status)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", "unmatched")
            self.metrics.requests.labels(template, scope["method"], str(status)).inc()
            self.metrics.request_duration.labels(template).observe(time.perf_counter() - started)
