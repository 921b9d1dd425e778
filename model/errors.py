"""The errors the model package raises on purpose: one base, a few kinds with a reason.

Callers catch :class:`ExtdError` (or one kind) instead of bare ``ValueError``
or ``RuntimeError``; ``reason`` is a stable machine-readable name for logs
and for the service's mapping to problem documents.
"""

from __future__ import annotations


class ExtdError(Exception):
    """Base of every deliberate error of the model package."""

    reason = "error"


class OptionsError(ExtdError, ValueError):
    """An option, a name or a parameter is out of range or unknown (a ``ValueError`` too, so
    argparse and pydantic report it as a bad value)."""

    reason = "invalid_options"


class ImageError(ExtdError):
    """The input is not a usable image."""

    reason = "unsupported_image"


class ImageTooLargeError(ImageError):
    """The image has more pixels than allowed; raised before the pixels are decoded."""

    reason = "image_too_large"


class TooManyScansError(ImageError):
    """A progressive JPEG with more scans than any real encoder writes (a CPU bomb); raised
    before decoding."""

    reason = "too_many_scans"


class CheckpointError(ExtdError):
    """A checkpoint file is unreadable, inconsistent or does not fit its variant."""

    reason = "bad_checkpoint"


class WeightsError(ExtdError):
    """A checkpoint could not be fetched or failed its checksum."""

    reason = "weights_unavailable"


class DataError(ExtdError):
    """Data (test images, ground truth, predictions) is missing, corrupt or malformed."""

    reason = "bad_data"


class BackendError(ExtdError):
    """A backend cannot run here: a missing extra, the wrong device, no calibration photos."""

    reason = "backend_unavailable"
