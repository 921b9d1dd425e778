"""Detection endpoints: JSON faces and an annotated JPEG."""

from __future__ import annotations

import io
import time
from typing import Annotated

import numpy as np
from fastapi import APIRouter, Query, Request, Response

from model.draw import draw_faces
from model.images import flatten
from model.inputs import PreparedImage
from service.dependencies import ApiKeyDep, PipelineDep, SettingsDep
from service.routes.openapi import ERRORS, UPLOAD_BODY
from service.routes.photos import faces_json, run_detection
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
    request: Request,
    pipeline: PipelineDep,
    settings: SettingsDep,
    params: Annotated[DetectParams, Query()],
) -> DetectResponse:
    """Send images as multipart files in ``images`` or as base64 strings in JSON.

    Results come in request order, in pixels of the upright (EXIF-rotated) image.
    """
    detection = await run_detection(request, pipeline, settings, params)
    started = time.perf_counter()
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
    policy = params.policy(settings.min_face)
    parameters = params.model_dump() | {
        "model": detection.model.name,
        "min_face": policy.min_face or 0,
    }
    return DetectResponse(
        model=detection.model.name,
        results=results,
        parameters=parameters,
        timings_ms=detection.timings_ms
        | {"json": round((time.perf_counter() - started) * 1000, 2)},
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
    request: Request,
    pipeline: PipelineDep,
    settings: SettingsDep,
    params: Annotated[DetectParams, Query()],
) -> Response:
    """The picture as shown (a photo with alpha flattened on white), its faces boxed."""
    detection = await run_detection(
        request, pipeline, settings, params, full_size=True, max_count=1
    )
    faces = detection.faces[0]
    body = await pipeline.offload(_annotated, detection.items[0], faces, params.score_threshold)
    return Response(
        body,
        media_type="image/jpeg",
        headers={"X-Faces": str(len(faces)), "X-Model": detection.model.name},
    )


def _annotated(item: PreparedImage, faces: np.ndarray, min_score: float) -> bytes:
    """The JPEG with the faces boxed (pixel work: runs on the decode pool)."""
    pixels = flatten(item.pixels.numpy(), item.alpha)
    buffer = io.BytesIO()
    draw_faces(pixels, faces, min_score=min_score).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()
