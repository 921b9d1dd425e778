"""What the OpenAPI document says of the routes' request bodies and of the photo routes'
refusals (the bodies are read by hand, so FastAPI cannot derive them)."""

from __future__ import annotations

from service.schemas import problem_responses

ERRORS = problem_responses(
    {
        401: "missing or wrong API key (when keys are configured)",
        404: "unknown model",
        413: "body or image too large",
        415: "not an image, an animated one, corrupt, or wrong content type",
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
