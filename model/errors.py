"""The errors the model package raises on purpose: one base, a few kinds with a reason.

Callers catch :class:`ExtdError` (or one kind) instead of bare ``ValueError``
or ``RuntimeError``; ``reason`` is a stable machine-readable name for logs
and for the service's mapping to problem documents.
"""

from __future__ import annotations

from typing import Any


class ExtdError(Exception):
    """Base of every deliberate error of the model package."""

    reason = "error"

    def __init_subclass__(cls, *, reason: str | None = None, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if reason:
            cls.reason = reason


class OptionsError(ExtdError, ValueError, reason="invalid_options"):
    """An option, a name or a parameter is out of range or unknown (a ``ValueError`` too, so
    argparse and pydantic report it as a bad value)."""


class ImageError(ExtdError, reason="unsupported_image"):
    """The input is not a usable image."""


class ImageTooLargeError(ImageError, reason="image_too_large"):
    """The image has more pixels than allowed; raised before the pixels are decoded."""


class TooManyScansError(ImageError, reason="too_many_scans"):
    """A progressive JPEG with more scans than any encoder writes (a CPU bomb), refused
    before decoding."""


class CheckpointError(ExtdError, reason="bad_checkpoint"):
    """A checkpoint file is unreadable, inconsistent or does not fit its variant."""


class WeightsError(ExtdError, reason="weights_unavailable"):
    """A checkpoint could not be fetched or failed its checksum."""


class DataError(ExtdError, reason="bad_data"):
    """Data (test images, ground truth, predictions) is missing, corrupt or malformed."""


class BackendError(ExtdError, reason="backend_unavailable"):
    """A backend cannot run here: a missing extra, the wrong device, no calibration photos."""
