"""What the photo routes share: reading a request's photos, finding their faces, and the
faces as JSON."""

from __future__ import annotations

import time
from dataclasses import replace

import numpy as np
from fastapi import Request

from model.detector import Protocol
from service.config import Settings
from service.pipeline import Detection, Pipeline
from service.schemas import DetectParams, Face
from service.uploads import Upload, read_uploads


async def read_images(
    request: Request, settings: Settings, field: str = "images", max_count: int | None = None
) -> Upload:
    limit = max_count or settings.max_images_per_request
    return await read_uploads(request, field=field, max_count=limit)


async def run_detection(
    request: Request,
    pipeline: Pipeline,
    settings: Settings,
    params: DetectParams,
    upload: Upload | None = None,
    *,
    full_size: bool = False,
    field: str = "images",
    max_count: int | None = None,
    protocol: Protocol = "single",
) -> Detection:
    """The model is looked up first: an unknown one is refused before the body is read.
    Reading and parsing the body is the ``upload`` of the timings."""
    model = pipeline.model(params.model)
    started = time.perf_counter()
    upload = upload or await read_images(request, settings, field, max_count)
    upload_ms = round((time.perf_counter() - started) * 1000, 2)
    detection = await pipeline.detect(
        upload.images,
        model=model,
        options=params.options(),
        policy=params.policy(settings.min_face),
        timeout_ms=params.timeout_ms,
        is_disconnected=request.is_disconnected,
        full_size=full_size,
        protocol=protocol,
    )
    return replace(detection, timings_ms={"upload": upload_ms, **detection.timings_ms})


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
