"""Detection endpoints: JSON faces and an annotated JPEG."""

from __future__ import annotations

import io
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response

from model.draw import draw_faces
from service.dependencies import ApiKeyDep, PipelineDep
from service.routes.detection import (
    ERRORS,
    UPLOAD_BODY,
    faces_json,
    run_detection,
)
from service.schemas import (
    DetectParams,
    DetectResponse,
    ImageResult,
)

router = APIRouter(tags=["detection"], dependencies=[ApiKeyDep])


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
    detection = await run_detection(request, pipeline, params)
    results = [
        ImageResult(
            width=width,
            height=height,
            input_size=list(item.plan.resized[::-1]),
            faces=faces_json(faces, width, height, clip=params.clip),
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
    detection = await run_detection(request, pipeline, params, full_size=True, max_count=1)
    pixels = detection.items[0].pixels.numpy()
    picture = draw_faces(pixels, detection.faces[0], min_score=params.score_threshold)
    buffer = io.BytesIO()
    picture.save(buffer, format="JPEG", quality=90)
    return Response(
        buffer.getvalue(),
        media_type="image/jpeg",
        headers={"X-Faces": str(len(detection.faces[0])), "X-Model": detection.model.name},
    )
