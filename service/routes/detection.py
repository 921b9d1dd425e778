"""What the routes that detect share: the request bodies, reading the images, running the
pipeline, faces as JSON, and the errors they document."""

from __future__ import annotations

import numpy as np
from fastapi import Request

from service.pipeline import Detection, Pipeline
from service.schemas import DetectParams, Face, problem_responses
from service.uploads import Upload, read_uploads

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

BINARY = {"type": "string", "format": "binary"}
BASE64 = {"type": "string", "format": "byte"}


def request_body(**content: dict) -> dict:
    """``openapi_extra`` for a request body: media type -> its object's properties."""
    schemas = {
        media_type: {
            "schema": {"type": "object", "properties": fields, "required": [next(iter(fields))]}
        }
        for media_type, fields in content.items()
    }
    return {"requestBody": {"required": True, "content": schemas}}


UPLOAD_BODY = request_body(
    **{
        "multipart/form-data": {"images": {"type": "array", "items": BINARY}},
        "application/json": {"images": {"type": "array", "items": BASE64}},
    }
)


async def read_images(
    request: Request, pipeline: Pipeline, field: str = "images", max_count: int | None = None
) -> Upload:
    limit = max_count or pipeline.settings.max_images_per_request
    return await read_uploads(request, field=field, max_count=limit)


async def run_detection(
    request: Request,
    pipeline: Pipeline,
    params: DetectParams,
    upload: Upload | None = None,
    *,
    full_size: bool = False,
    field: str = "images",
    max_count: int | None = None,
) -> Detection:
    """The model is looked up first: an unknown one is refused before the body is read."""
    model = pipeline.model(params.model)
    upload = upload or await read_images(request, pipeline, field, max_count)
    return await pipeline.detect(
        upload.images,
        model=model,
        options=params.options(),
        policy=params.policy(pipeline.settings.min_face),
        timeout_ms=params.timeout_ms,
        is_disconnected=request.is_disconnected,
        full_size=full_size,
    )


def faces_json(faces: np.ndarray, width: int, height: int, *, clip: bool) -> list[Face]:
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
