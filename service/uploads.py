"""Reading image uploads: multipart files or base64 strings in JSON, within the upload limits."""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass, field

from starlette.datastructures import FormData, UploadFile
from starlette.requests import Request

from service.problems import ProblemError

MULTIPART = "multipart/form-data"
JSON = "application/json"
# Text fields a form may carry besides its files (parameters such as min_confidence).
MAX_TEXT_FIELDS = 32


@dataclass(frozen=True)
class Upload:
    """The encoded images of a request, in order, and the form's text fields."""

    images: list[bytes]
    fields: dict[str, str] = field(default_factory=dict)


def _too_many(count: int, limit: int) -> ProblemError:
    return ProblemError(
        422, "too_many_images", f"{count} images in one request, at most {limit}", limit=limit
    )


async def read_uploads(request: Request, *, field: str, max_count: int) -> Upload:
    """The request's images (at most ``max_count``); raises problems for malformed bodies."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type == MULTIPART:
        return await _read_multipart(request, field, max_count)
    if content_type == JSON:
        return Upload(_read_json(await request.body(), field, max_count))
    raise ProblemError(
        415,
        "unsupported_media_type",
        f"send {MULTIPART} with files in '{field}', or {JSON} {{\"{field}\": [base64, ...]}}",
    )


async def read_form(request: Request, *, max_files: int) -> FormData:
    """The multipart form, parsed once: Starlette keeps it for later reads of the request (a
    dependency that looks at a field, then the route). One file more than ``max_files`` is
    parsed, so that too many is reported as such."""
    try:
        return await request.form(max_files=max_files + 1, max_fields=max_files + MAX_TEXT_FIELDS)
    except ProblemError:
        raise
    except Exception as error:  # the multipart parser raises several types
        raise ProblemError(422, "invalid_request", f"malformed multipart body: {error}") from error


async def _read_multipart(request: Request, field: str, max_count: int) -> Upload:
    form = await read_form(request, max_files=max_count)
    try:
        values = form.getlist(field)
        files = [v for v in values if isinstance(v, UploadFile)]
        if len(files) != len(values):
            raise ProblemError(
                422, "invalid_request", f"'{field}' must hold files, not text fields"
            )
        if not files:
            raise ProblemError(422, "invalid_request", f"no files in the form field '{field}'")
        if len(files) > max_count:
            raise _too_many(len(files), max_count)
        texts = {}
        for name, value in form.multi_items():
            if name == field:
                continue
            if not isinstance(value, str):
                raise ProblemError(
                    422, "invalid_parameters", f"form field '{name}' must be text, not a file"
                )
            texts[name] = value
        return Upload([await f.read() for f in files], texts)
    finally:
        await form.close()


def _read_json(body: bytes, field: str, max_count: int) -> list[bytes]:
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError) as error:
        reason = "nested too deeply" if isinstance(error, RecursionError) else str(error)
        raise ProblemError(422, "invalid_request", f"body is not valid JSON: {reason}") from error
    images = payload.get(field) if isinstance(payload, dict) else None
    if isinstance(images, str):  # {"image": "..."}: one image without the list
        images = [images]
    if not isinstance(images, list) or not images:
        raise ProblemError(
            422,
            "invalid_request",
            f'expected {{"{field}": [base64 strings]}} (or one string) with at least one image',
        )
    if len(images) > max_count:
        raise _too_many(len(images), max_count)
    return [_decode_base64(index, text) for index, text in enumerate(images)]


def _decode_base64(index: int, text: object) -> bytes:
    """Standard base64, or a ``data:`` URL; line breaks (``base64`` wraps at 76) are allowed."""
    if not isinstance(text, str):
        raise ProblemError(422, "invalid_request", f"image {index} is not a string", index=index)
    if text.startswith("data:") and "," in text:
        text = text.split(",", 1)[1]
    try:
        return base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError) as error:
        raise ProblemError(
            422, "invalid_base64", f"image {index} is not valid base64: {error}", index=index
        ) from error
