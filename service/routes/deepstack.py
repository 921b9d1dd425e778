"""The DeepStack / CodeProject.AI face route, for Frigate, Double Take, Home Assistant and co.

Those clients send a form: ``image``, ``min_confidence`` and, where the
server wants one, ``api_key``. Anything else is refused, so a typo is not
silently ignored.
"""

from __future__ import annotations

import math
from typing import Annotated

import numpy as np
from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from model.options import SERVING
from service.dependencies import PipelineDep, SettingsDep, StateDep, check_api_key, presented_key
from service.problems import ProblemError
from service.routes.openapi import BINARY, ERRORS, request_body
from service.routes.photos import read_images, run_detection
from service.schemas import DeepStackFace, DeepStackResponse, DetectParams
from service.uploads import read_form

FIELDS = {"image", "min_confidence", "api_key"}
BODY = request_body(
    **{
        "multipart/form-data": {
            "image": BINARY,
            "min_confidence": {"type": "number", "minimum": 0, "exclusiveMaximum": 1},
            "api_key": {"type": "string", "description": "an API key, when keys are configured"},
        }
    }
)


async def require_key(
    request: Request, state: StateDep, presented: Annotated[str, Depends(presented_key)]
) -> None:
    """A key in the headers, or in the form's ``api_key`` (what these clients send)."""
    if state.api_keys.enabled and not presented:
        field = (await read_form(request, max_files=1)).get("api_key")
        presented = field if isinstance(field, str) else ""
    check_api_key(request, state, presented)


router = APIRouter(tags=["compatibility"], dependencies=[Depends(require_key)])


class DeepStackParams(BaseModel):
    """The query of the route: the model only (the rest comes in the form)."""

    model_config = ConfigDict(extra="forbid")

    model: str | None = Field(None, description="a loaded model's name (default: the server's)")


def _min_confidence(text: str | None) -> float:
    if not text:
        return SERVING.score_threshold
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0.0 <= value < 1.0:
        raise ProblemError(
            422, "invalid_parameters", f"min_confidence must be a number in [0, 1), got {text!r}"
        )
    return value


@router.post(
    "/v1/vision/face",
    response_model=DeepStackResponse,
    responses=ERRORS,
    summary="DeepStack / CodeProject.AI face detection",
    openapi_extra=BODY,
)
async def deepstack_face(
    request: Request,
    pipeline: PipelineDep,
    settings: SettingsDep,
    query: Annotated[DeepStackParams, Query()],
) -> DeepStackResponse:
    """Form field ``image`` (optional ``min_confidence``, ``api_key``)."""
    pipeline.model(query.model)
    upload = await read_images(request, settings, field="image", max_count=1)
    unknown = sorted(set(upload.fields) - FIELDS)
    if unknown:
        raise ProblemError(
            422, "invalid_parameters", f"unknown form fields {unknown}; known: {sorted(FIELDS)}"
        )
    params = DetectParams(
        model=query.model,
        score_threshold=_min_confidence(upload.fields.get("min_confidence")),
        clip=True,
    )
    detection = await run_detection(request, pipeline, settings, params, upload)
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
