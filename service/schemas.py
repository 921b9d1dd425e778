"""Request parameters and response bodies of the HTTP API (also the OpenAPI schema)."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from model.anonymize import (
    MASK_MARGIN_RANGE,
    MASK_SCALE_RANGE,
    METHODS,
    SHAPES,
    AnonymizeOptions,
    parse_color,
)
from model.detector import Protocol
from model.images import OUTPUT_FORMATS
from model.options import PRIVACY, SERVING, PostprocessOptions, ScalePolicy, help_text
from model.video import VideoOptions
from service.problems import ProblemCode


class DetectParams(BaseModel):
    """Query parameters of the detection endpoints."""

    model_config = ConfigDict(extra="forbid")

    model: str | None = Field(
        None, description="a loaded model's name (default: the configured one)"
    )
    # The defaults are model.options.SERVING, not the release's evaluation thresholds.
    score_threshold: float = Field(
        SERVING.score_threshold,
        ge=0.0,
        lt=1.0,
        description=help_text(PostprocessOptions, "score_threshold"),
    )
    nms_iou: float = Field(
        SERVING.nms_iou, gt=0.0, le=1.0, description=help_text(PostprocessOptions, "nms_iou")
    )
    max_faces: int = Field(
        SERVING.max_faces, ge=0, le=5000, description=help_text(PostprocessOptions, "max_faces")
    )
    scale: float | None = Field(None, gt=0.0, le=4.0, description=help_text(ScalePolicy, "scale"))
    max_side: int | None = Field(
        None, ge=16, le=8192, description=help_text(ScalePolicy, "max_side")
    )
    min_face: int | None = Field(
        None,
        ge=0,
        le=8192,
        description=help_text(ScalePolicy, "min_face")
        + "; 0 asks for every face (default: the server's EXTD_MIN_FACE, unset: every face)",
    )
    timeout_ms: int | None = Field(
        None, ge=1, le=600_000, description="deadline (default from the server's settings)"
    )
    clip: bool = Field(
        False, description="clip boxes to the image (the model's boxes may stick out)"
    )

    @model_validator(mode="after")
    def _one_scale_policy(self) -> DetectParams:
        if self.scale is not None and self.max_side is not None:
            raise ValueError("give either scale or max_side, not both")
        return self

    def options(self) -> PostprocessOptions:
        return PostprocessOptions(self.score_threshold, self.nms_iou, self.max_faces)

    def policy(self, default_min_face: int | None = None) -> ScalePolicy:
        """The scale policy; ``default_min_face`` (the server's) unless the request set one."""
        min_face = default_min_face if self.min_face is None else self.min_face
        return ScalePolicy(scale=self.scale, max_side=self.max_side, min_face=min_face or None)


_ANONYMIZE = AnonymizeOptions()
_VIDEO = VideoOptions()


def privacy_threshold() -> Any:
    """The score threshold of the routes that hide faces: model.options.PRIVACY, lower than
    detection's, since a missed face leaks."""
    return Field(
        PRIVACY.score_threshold,
        ge=0.0,
        lt=1.0,
        description=help_text(PostprocessOptions, "score_threshold"),
    )


class PrivacyParams(BaseModel):
    """What the routes that hide faces find them with: model.options.PRIVACY's thresholds and
    the detection protocol."""

    score_threshold: float = privacy_threshold()
    small_face_threshold: float = Field(
        PRIVACY.small_face_threshold,
        ge=0.0,
        lt=1.0,
        description=help_text(PostprocessOptions, "small_face_threshold"),
    )
    small_face_size: int = Field(
        PRIVACY.small_face_size,
        ge=1,
        le=4096,
        description=help_text(PostprocessOptions, "small_face_size"),
    )
    protocol: Protocol = Field(
        "single",
        description="single: one pass at the photo's size; paper: the paper's test protocol, "
        "several scales and a flip merged by box voting: more small faces hidden, about 5 "
        "times the time (docs/anonymization.md)",
    )


class HidingParams(BaseModel):
    """How faces are hidden (``/v1/anonymize`` and video jobs)."""

    method: Literal[METHODS] = Field(  # type: ignore[valid-type]
        _ANONYMIZE.method, description=help_text(AnonymizeOptions, "method")
    )
    shape: Literal[SHAPES] = Field(  # type: ignore[valid-type]
        _ANONYMIZE.shape, description=help_text(AnonymizeOptions, "shape")
    )
    mask_scale: float = Field(
        _ANONYMIZE.mask_scale,
        ge=MASK_SCALE_RANGE[0],
        le=MASK_SCALE_RANGE[1],
        description=help_text(AnonymizeOptions, "mask_scale"),
    )
    mask_margin: float = Field(
        _ANONYMIZE.mask_margin,
        ge=MASK_MARGIN_RANGE[0],
        le=MASK_MARGIN_RANGE[1],
        description=help_text(AnonymizeOptions, "mask_margin"),
    )
    color: str = Field(_ANONYMIZE.color, description=help_text(AnonymizeOptions, "color"))

    @field_validator("color")
    @classmethod
    def _color_parses(cls, value: str) -> str:
        parse_color(value)
        return value

    def anonymize_options(self) -> AnonymizeOptions:
        return AnonymizeOptions(
            method=self.method,
            shape=self.shape,
            mask_scale=self.mask_scale,
            mask_margin=self.mask_margin,
            color=self.color,
        )


class AnonymizeParams(HidingParams, PrivacyParams, DetectParams):
    """Query parameters of ``/v1/anonymize``: detection's, with the thresholds for privacy,
    the protocol, and how faces are hidden."""

    score_threshold: float = privacy_threshold()
    format: Literal[tuple(OUTPUT_FORMATS)] | None = Field(  # type: ignore[valid-type]
        None, description="jpeg, png or webp (default: the upload's; PNG for other formats)"
    )
    keep_metadata: bool = Field(
        False,
        description="keep the upload's EXIF (GPS included; orientation reset to upright); "
        "by default no metadata is written",
    )

    def options(self) -> PostprocessOptions:
        return PostprocessOptions(
            self.score_threshold,
            self.nms_iou,
            self.max_faces,
            small_face_threshold=self.small_face_threshold,
            small_face_size=self.small_face_size,
        )


class VideoParams(HidingParams, PrivacyParams):
    """Query parameters of ``POST /v1/jobs/anonymize``."""

    model_config = ConfigDict(extra="forbid")

    model: str | None = Field(
        None, description="a loaded model's name (default: the configured one)"
    )
    min_face: int | None = Field(
        None, ge=0, le=8192, description=help_text(ScalePolicy, "min_face") + "; 0: every face"
    )
    hold: int = Field(_VIDEO.hold, ge=0, le=30, description=help_text(VideoOptions, "hold"))
    codec: Literal["libx264", "libx265", "libvpx-vp9", "mpeg4"] | None = Field(
        None, description=help_text(VideoOptions, "codec") + " (default: by the container)"
    )
    crf: int | None = Field(None, ge=0, le=63, description=help_text(VideoOptions, "crf"))

    def job_parameters(self, model: str, default_min_face: int | None) -> dict[str, Any]:
        """What the job runs with, every default resolved (stored in the job)."""
        min_face = default_min_face if self.min_face is None else self.min_face
        return {
            "model": model,
            "detection": {
                "score_threshold": self.score_threshold,
                "small_face_threshold": self.small_face_threshold,
                "small_face_size": self.small_face_size,
                "max_faces": 0,
            },
            "protocol": self.protocol,
            "policy": {"min_face": min_face or None},
            "hiding": asdict(self.anonymize_options()),
            "video": {"hold": self.hold, "codec": self.codec, "crf": self.crf},
        }


class JobStatus(BaseModel):
    """A video job: ``GET /v1/jobs/{id}``, and the answer to its creation."""

    id: str
    state: Literal["queued", "running", "done", "failed", "cancelled"]
    progress: float = Field(description="0 to 1")
    frames_done: int
    frames_total: int
    error: str | None = Field(None, description="why it failed")
    error_code: str | None = Field(
        None,
        description="a stable name for why it failed: video_too_long, video_frame_too_large, "
        "unsupported_video (not a video, corrupt or truncated), worker_lost (its worker "
        "stopped job_max_attempts times), internal",
    )
    attempts: int = Field(description="runs started (a run cut short by a stop is not counted)")
    created: float = Field(description="Unix time")
    updated: float
    result: str | None = Field(None, description="the path of the video, once done")
    parameters: dict[str, Any]


class Face(BaseModel):
    box: list[float] = Field(description="x1, y1, x2, y2 in pixels of the upright image")
    box_normalized: list[float] = Field(description="the box divided by width and height")
    score: float


class ImageResult(BaseModel):
    width: int = Field(description="of the upright image, as uploaded")
    height: int
    input_size: list[int] = Field(
        description="width, height the network saw the image at (before padding)"
    )
    faces: list[Face]


class DetectResponse(BaseModel):
    model: str
    results: list[ImageResult]
    parameters: dict[str, Any] = Field(description="the effective parameters of the request")
    timings_ms: dict[str, float] = Field(
        description="milliseconds per stage: upload, decode, detect (queue, resize, network, "
        "postprocess), total (decode and detect), json"
    )


class AnonymizeResponse(BaseModel):
    """The JSON variant of ``/v1/anonymize`` (``Accept: application/json``)."""

    model: str
    width: int
    height: int
    faces: list[Face] = Field(description="the faces hidden, in pixels of the upright image")
    format: str
    image: str = Field(description="the anonymized image, base64")
    parameters: dict[str, Any]
    timings_ms: dict[str, float]


class ModelInfo(BaseModel):
    name: str
    variant: str
    parameters: int
    source: str
    sha256: str
    file: str
    file_present: bool = Field(
        description="false while the file is gone (the default keeps serving from memory)"
    )
    backend: str
    device: str
    default: bool
    training: dict[str, Any]


class ModelList(BaseModel):
    models: list[ModelInfo]


class DeepStackFace(BaseModel):
    confidence: float
    x_min: int
    y_min: int
    x_max: int
    y_max: int


class DeepStackResponse(BaseModel):
    success: bool = True
    predictions: list[DeepStackFace]
    count: int
    inferenceMs: int  # CodeProject.AI spells these in camel case
    processMs: int


class ReloadResponse(BaseModel):
    loaded: list[str]
    refused: dict[str, str]
    removed: list[str]
    models: list[str]


class FieldError(BaseModel):
    location: str = Field(description="where, e.g. query.score_threshold")
    message: str


class Problem(BaseModel):
    """RFC 9457 problem details (``application/problem+json``), with a stable ``code``."""

    type: str = "about:blank"
    title: str = Field(description="the HTTP reason phrase")
    status: int
    detail: str = Field(description="what went wrong and what to change")
    code: ProblemCode
    instance: str | None = Field(None, description="the request path")
    index: int | None = Field(None, description="which image of the request (from 0)")
    limit: int | None = Field(None, description="the limit that was exceeded")
    reason: str | None = Field(None, description="not_ready: loading, warming or stopping")
    errors: list[FieldError] | None = Field(None, description="invalid_parameters: each field")


def problem_responses(descriptions: dict[int, str]) -> dict[int | str, dict[str, Any]]:
    """``responses=`` of a route: a :class:`Problem` per error status, with its meaning."""
    return {
        status: {"model": Problem, "description": text} for status, text in descriptions.items()
    }
