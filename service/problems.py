"""RFC 9457 problem details: every error leaves as ``application/problem+json``.

Each problem has a stable machine-readable ``code``; ``title`` is the HTTP
reason phrase and ``detail`` says what to fix. The service core's refusals
(:mod:`service.errors`) become problems through :data:`REFUSALS`, the one
table of status, code and metric label.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, Literal

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from service import errors
from service.state import service_state

log = logging.getLogger(__name__)

MEDIA_TYPE = "application/problem+json"
RETRY = {"Retry-After": "1"}  # seconds a refused client should wait before trying again

# Every code a problem can carry; the README's error table lists each one.
ProblemCode = Literal[
    "admin_disabled",
    "body_too_large",
    "client_closed",
    "headers_too_large",
    "deadline_exceeded",
    "http_error",
    "image_too_large",
    "input_too_large",
    "internal_error",
    "invalid_base64",
    "invalid_parameters",
    "invalid_request",
    "job_not_finished",
    "job_not_found",
    "method_not_allowed",
    "model_not_found",
    "not_found",
    "not_ready",
    "queue_full",
    "queue_unavailable",
    "rate_limited",
    "request_too_large",
    "shutting_down",
    "too_many_images",
    "too_many_jobs",
    "too_many_scans",
    "unauthorized",
    "unsupported_image",
    "unsupported_media_type",
    "unsupported_video",
    "video_frame_too_large",
    "video_too_long",
]


class ProblemError(Exception):
    """Raised anywhere in a request to answer with a problem document."""

    def __init__(
        self,
        status: int,
        code: ProblemCode,
        detail: str,
        *,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail
        self.headers = headers
        self.extra = extra


@dataclass(frozen=True)
class Answer:
    """How a refusal is answered: status, problem code, and the ``extd_rejected_total``
    label it is counted under (None: not counted as a rejection)."""

    status: int
    code: ProblemCode
    counted_as: str | None = None
    retry_after_s: float | None = None  # unless the refusal says when


REFUSALS: dict[type[errors.Refusal], Answer] = {
    errors.UnknownModel: Answer(404, "model_not_found"),
    errors.InvalidParameters: Answer(422, "invalid_parameters"),
    errors.UnsupportedImage: Answer(415, "unsupported_image", "bad_image"),
    errors.TooManyScans: Answer(422, "too_many_scans", "too_many_scans"),
    errors.ImageTooLarge: Answer(413, "image_too_large", "image_too_large"),
    errors.InputTooLarge: Answer(413, "input_too_large", "input_too_large"),
    errors.RequestTooLarge: Answer(413, "request_too_large", "request_too_large"),
    errors.QueueFull: Answer(429, "queue_full", "queue_full", retry_after_s=1),
    errors.ShuttingDown: Answer(503, "shutting_down", "stopping", retry_after_s=1),
    errors.DeadlineExceeded: Answer(504, "deadline_exceeded", "deadline"),
    errors.ClientClosed: Answer(499, "client_closed"),
    errors.UnsupportedVideo: Answer(415, "unsupported_video", "bad_video"),
    errors.VideoTooLong: Answer(413, "video_too_long", "video_too_long"),
    errors.VideoFrameTooLarge: Answer(413, "video_frame_too_large", "video_frame_too_large"),
    errors.JobNotFound: Answer(404, "job_not_found"),
    errors.JobNotFinished: Answer(409, "job_not_finished"),
    errors.TooManyJobs: Answer(429, "too_many_jobs", "too_many_jobs"),
    errors.QueueUnavailable: Answer(503, "queue_unavailable", "queue_unavailable", 5),
    errors.InferenceUnavailable: Answer(503, "not_ready", "not_ready", retry_after_s=1),
}


def answer(refusal: errors.Refusal) -> Answer:
    return REFUSALS[type(refusal)]


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Client Closed Request" if status == 499 else "Error"


def problem_response(
    status: int,
    code: ProblemCode,
    detail: str,
    *,
    instance: str | None = None,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    body = {
        "type": "about:blank",
        "title": _phrase(status),
        "status": status,
        "detail": detail,
        "code": code,
        **({"instance": instance} if instance else {}),
        **extra,
    }
    return JSONResponse(body, status_code=status, headers=headers, media_type=MEDIA_TYPE)


_STATUS_CODES: dict[int, ProblemCode] = {
    404: "not_found",
    405: "method_not_allowed",
    413: "body_too_large",
    415: "unsupported_media_type",
}


def install_problem_handlers(app: FastAPI) -> None:
    @app.exception_handler(errors.Refusal)
    async def _refused(request: Request, refusal: errors.Refusal) -> JSONResponse:
        entry = answer(refusal)
        if entry.counted_as:
            service_state(request.app).metrics.rejected.labels(entry.counted_as).inc()
        extra = {k: v for k in ("index", "limit") if (v := getattr(refusal, k)) is not None}
        headers, retry = None, refusal.retry_after_s or entry.retry_after_s
        if retry is not None:
            headers = {"Retry-After": str(max(1, math.ceil(retry)))}
        return problem_response(
            entry.status,
            entry.code,
            refusal.detail,
            instance=request.url.path,
            headers=headers,
            **extra,
        )

    @app.exception_handler(ProblemError)
    async def _problem(request: Request, error: ProblemError) -> JSONResponse:
        return problem_response(
            error.status,
            error.code,
            error.detail,
            instance=request.url.path,
            headers=error.headers,
            **error.extra,
        )

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, error: RequestValidationError) -> JSONResponse:
        errors = [
            {"location": ".".join(str(p) for p in e.get("loc", ())), "message": e.get("msg", "")}
            for e in error.errors()
        ]
        detail = "; ".join(f"{e['location']}: {e['message']}" for e in errors)
        return problem_response(
            422, "invalid_parameters", detail, instance=request.url.path, errors=errors
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, error: StarletteHTTPException) -> JSONResponse:
        code = _STATUS_CODES.get(error.status_code, "http_error")
        return problem_response(
            error.status_code,
            code,
            str(error.detail),
            instance=request.url.path,
            headers=getattr(error, "headers", None),
        )

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, error: Exception) -> JSONResponse:
        log.exception("unhandled error on %s", request.url.path)
        return problem_response(
            500, "internal_error", "unexpected server error", instance=request.url.path
        )
