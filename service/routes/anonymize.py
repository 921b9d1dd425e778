"""``/v1/anonymize``: the uploaded photo back with every face hidden.

A photo with transparency keeps its alpha channel unchanged in PNG and WebP,
its faces hidden in the colour channels; what lies under alpha 0 was never
shown and comes back as the background colour (white), which is also what a
JPEG of it is flattened on (:mod:`model.images`).
"""

from __future__ import annotations

import base64
import time
from typing import Annotated

import numpy as np
from fastapi import APIRouter, Query, Request, Response

from model.anonymize import AnonymizeOptions, anonymize
from model.images import MEDIA_TYPES, ImageHeader, encode_image, output_format, upright_exif
from model.inputs import PreparedImage
from service.dependencies import ApiKeyDep, PipelineDep, SettingsDep
from service.routes.openapi import BASE64, BINARY, ERRORS, request_body
from service.routes.photos import faces_json, read_images, run_detection
from service.schemas import AnonymizeParams, AnonymizeResponse

router = APIRouter(tags=["anonymization"], dependencies=[ApiKeyDep])

IMAGE_BODY = request_body(
    **{"multipart/form-data": {"image": BINARY}, "application/json": {"image": BASE64}}
)
JSON = "application/json"


def _hidden(
    header: ImageHeader,
    item: PreparedImage,
    faces: np.ndarray,
    options: AnonymizeOptions,
    fmt: str | None,
    keep_metadata: bool,
) -> tuple[bytes, str]:
    """The photo with its faces hidden, encoded (pixel work: runs on the decode pool)."""
    fmt = fmt or output_format(header)
    exif = upright_exif(header) if keep_metadata else None
    hidden = anonymize(item.pixels.numpy(), faces, options, input_scale=item.plan.scale)
    return encode_image(hidden, fmt, alpha=item.alpha, exif=exif), fmt


@router.post(
    "/v1/anonymize",
    responses={
        200: {
            "content": {media: {} for media in MEDIA_TYPES.values()}
            | {JSON: {"schema": AnonymizeResponse.model_json_schema()}},
            "description": "the image, faces hidden, same size and orientation as displayed, "
            "alpha kept (flattened on white for JPEG); X-Faces says how many (or JSON with the "
            "faces, for Accept: application/json)",
        }
    }
    | ERRORS,
    response_class=Response,
    openapi_extra=IMAGE_BODY,
    summary="Hide the faces of a photo",
)
async def anonymize_image(
    request: Request,
    pipeline: PipelineDep,
    settings: SettingsDep,
    params: Annotated[AnonymizeParams, Query()],
) -> Response:
    """One still image (multipart ``image``, or JSON ``{"image": base64}``). The answer is
    upright (EXIF orientation applied), keeps a transparent photo's alpha channel (in PNG or
    WebP), and carries no metadata unless ``keep_metadata``. Animated images get 415."""
    pipeline.model(params.model)  # an unknown model is refused before the body is read
    upload = await read_images(request, settings, field="image", max_count=1)
    detection = await run_detection(
        request, pipeline, settings, params, upload, full_size=True, protocol=params.protocol
    )
    item, faces = detection.items[0], detection.faces[0]
    started = time.perf_counter()
    body, fmt = await pipeline.offload(
        _hidden,
        detection.headers[0],
        item,
        faces,
        params.anonymize_options(),
        params.format,
        params.keep_metadata,
    )
    timings = detection.timings_ms | {"anonymize": round((time.perf_counter() - started) * 1000, 2)}
    headers = {"X-Faces": str(len(faces)), "X-Model": detection.model.name}
    if JSON in request.headers.get("accept", "") and "image/" not in request.headers["accept"]:
        height, width = item.plan.size
        answer = AnonymizeResponse(
            model=detection.model.name,
            width=width,
            height=height,
            faces=faces_json(faces, width, height, clip=params.clip),
            format=fmt,
            image=base64.b64encode(body).decode(),
            parameters=params.model_dump() | {"model": detection.model.name, "format": fmt},
            timings_ms=timings,
        )
        return Response(answer.model_dump_json(), media_type=JSON, headers=headers)
    return Response(body, media_type=MEDIA_TYPES[fmt], headers=headers)
