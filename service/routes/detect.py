"""Detection endpoints: JSON faces, an annotated JPEG, and the DeepStack-compatible route."""

from __future__ import annotations

import io
from typing import Annotated

import numpy as np
from fastapi import APIRouter, Query, Request, Response

from model.draw import draw_faces
from model.options import SERVING
from service.dependencies import ApiKeyDep, PipelineDep
from service.pipeline import Detection, Pipeline
from service.problems import ProblemError
from service.schemas import (
    DeepStackFace,
    DeepStackResponse,
    DetectParams,
    DetectResponse,
    Face,
    ImageResult,
    problem_responses,
)
from service.uploads import Upload, read_uploads

router = APIRouter(tags=["detection"], dependencies=[ApiKeyDep])

ERRORS = problem_responses(
    {
        401: "missing or wrong API key (when keys are configured)",
        404: "unknown model",
        413: "body or image too large",
        415: "not an image, corrupt, or wrong content type",
        422: "bad parameters or request body",
        429: "queue full, or over the API key's rate (see Retry-After)",
        503: "not ready yet, or shutting down (see Retry-After)",
        504: "deadline passed",
    }
)

_BINARY = {"type": "string", "format": "binary"}
_BASE64 = {"type": "string", "format": "byte"}


def _body(**content: dict) -> dict:
    """``openapi_extra`` for a request body: media type -> its object's properties."""
    schemas = {
        media_type: {
            "schema": {"type": "object", "properties": fields, "required": [next(iter(fields))]}
        }
        for media_type, fields in content.items()
    }
    return {"requestBody": {"required": True, "content": schemas}}


UPLOAD_BODY = _body(
    **{
        "multipart/form-data": {"images": {"type": "array", "items": _BINARY}},
        "application/json": {"images": {"type": "array", "items": _BASE64}},
    }
)
DEEPSTACK_BODY = _body(
    **{"multipart/form-data": {"image": _BINARY, "min_confidence": {"type": "number"}}}
)


async def _upload(
    request: Request, pipeline: Pipeline, field: str = "images", max_count: int | None = None
) -> Upload:
    limit = max_count or pipeline.settings.max_images_per_request
    return await read_uploads(request, field=field, max_count=limit)


async def _run(
    request: Request,
    pipeline: Pipeline,
    params: DetectParams,
    upload: Upload | None = None,
    *,
    full_size: bool = False,
    max_count: int | None = None,
) -> Detection:
    """The model is looked up first: an unknown one is refused before the body is read."""
    model = pipeline.model(params.model)
    upload = upload or await _upload(request, pipeline, max_count=max_count)
    return await pipeline.detect(
        upload.images,
        model=model,
        options=params.options(),
        policy=params.policy(pipeline.settings.min_face),
        timeout_ms=params.timeout_ms,
        is_disconnected=request.is_disconnected,
        full_size=full_size,
    )


def _faces(faces: np.ndarray, width: int, height: int, *, clip: bool) -> list[Face]:
    boxes = faces[:, :4].astype(np.float64)
    if clip:
        boxes = np.clip(boxes, 0, [width, height, width, height])
    normalized = boxes / [width, height, width, height]
    return [
        Face(
            box=[round(v, 2) for v in box.tolist()],
            box_normalized=[round(v, 5) for v in norm.tolist()],
            score=round(float(score), 4),
        )
        for box, norm, score in zip(boxes, normalized, faces[:, 4], strict=True)
    ]


@router.post(
    "/v1/detect",
    response_model=DetectResponse,
    responses=ERRORS,
    openapi_extra=UPLOAD_BODY,
    summary="Detect faces in one or more images",
)
async def detect(
    request: Request, pipeline: PipelineDep, params: Annotated[DetectParams, Query()]
) -> DetectResponse:
    """Send images as multipart files in ``images`` or as base64 strings in JSON.

    Results come in request order, in pixels of the upright (EXIF-rotated) image.
    """
    detection = await _run(request, pipeline, params)
    results = [
        ImageResult(
            width=width,
            height=height,
            input_size=list(item.plan.resized[::-1]),
            faces=_faces(faces, width, height, clip=params.clip),
        )
        for item, faces in zip(detection.items, detection.faces, strict=True)
        for height, width in [item.plan.size]
    ]
    policy = params.policy(pipeline.settings.min_face)
    parameters = params.model_dump() | {
        "model": detection.model.name,
        "min_face": policy.min_face or 0,
    }
    return DetectResponse(
        model=detection.model.name,
        results=results,
        parameters=parameters,
        timings_ms=detection.timings_ms,
    )


@router.post(
    "/v1/detect/annotated",
    responses={200: {"content": {"image/jpeg": {}}, "description": "the image, faces boxed"}}
    | ERRORS,
    response_class=Response,
    openapi_extra=UPLOAD_BODY,
    summary="Detect faces and return the image with the boxes drawn",
)
async def detect_annotated(
    request: Request, pipeline: PipelineDep, params: Annotated[DetectParams, Query()]
) -> Response:
    detection = await _run(request, pipeline, params, full_size=True, max_count=1)
    pixels = detection.items[0].pixels.numpy()
    picture = draw_faces(pixels, detection.faces[0], min_score=params.score_threshold)
    buffer = io.BytesIO()
    picture.save(buffer, format="JPEG", quality=90)
    return Response(
        buffer.getvalue(),
        media_type="image/jpeg",
        headers={"X-Faces": str(len(detection.faces[0])), "X-Model": detection.model.name},
    )


@router.post(
    "/v1/vision/face",
    response_model=DeepStackResponse,
    responses=ERRORS,
    tags=["compatibility"],
    summary="DeepStack / CodeProject.AI face detection",
    openapi_extra=DEEPSTACK_BODY,
)
async def deepstack_face(request: Request, pipeline: PipelineDep) -> DeepStackResponse:
    """Form field ``image`` (optional ``min_confidence``), for Frigate, Double Take and co."""
    upload = await _upload(request, pipeline, field="image", max_count=1)
    try:
        min_confidence = upload.fields.get("min_confidence") or SERVING.score_threshold
        params = DetectParams(score_threshold=float(min_confidence), clip=True)
    except ValueError as error:
        raise ProblemError(422, "invalid_parameters", f"min_confidence: {error}") from error
    detection = await _run(request, pipeline, params, upload)
    (height, width), faces = detection.sizes[0], detection.faces[0]
    boxes = np.clip(np.rint(faces[:, :4]), 0, [width - 1, height - 1, width - 1, height - 1])
    predictions = [
        DeepStackFace(
            confidence=round(float(score), 4),
            x_min=int(x1),
            y_min=int(y1),
            x_max=int(x2),
            y_max=int(y2),
        )
        for (x1, y1, x2, y2), score in zip(boxes, faces[:, 4], strict=True)
    ]
    timings = detection.timings_ms
    return DeepStackResponse(
        predictions=predictions,
        count=len(predictions),
        inferenceMs=round(timings["detect"]),
        processMs=round(timings["total"]),
    )
