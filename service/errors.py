"""What the service core refuses, in its own terms; the HTTP edge maps each to a problem.

The pipeline and the batcher raise these; ``service/problems.py`` holds the
one table that turns each into a status, a problem ``code`` and the label it
is counted under in ``extd_rejected_total``. No FastAPI here, so the core is
testable without a web app.
"""

from __future__ import annotations


class Refusal(Exception):
    """A request the service will not serve, or can no longer serve."""

    def __init__(
        self,
        detail: str,
        *,
        index: int | None = None,
        limit: int | None = None,
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.index = index  # which image of the request, from 0
        self.limit = limit  # the limit that was exceeded
        self.retry_after_s = retry_after_s  # when trying again makes sense


class UnknownModel(Refusal):
    """The request names a model that is not loaded."""


class InvalidParameters(Refusal):
    """A parameter the core checks (a deadline longer than the drain, ...)."""


class UnsupportedImage(Refusal):
    """Not an image, a corrupt or truncated one, or a format that is not supported."""


class TooManyScans(Refusal):
    """A JPEG with more progressive scans than any encoder writes (a decoding bomb)."""


class ImageTooLarge(Refusal):
    """An image over the decoded pixel limit, from its header."""


class InputTooLarge(Refusal):
    """An image whose network input would be over the input pixel limit."""


class RequestTooLarge(Refusal):
    """The images of a request together are over the decoded pixel limit."""


class QueueFull(Refusal):
    """The queue cannot take the request's images now."""


class ShuttingDown(Refusal):
    """The service is stopping and takes no new work."""


class DeadlineExceeded(Refusal):
    """The request's deadline passed before its faces were found."""


class ClientClosed(Refusal):
    """The client went away before its answer."""


class UnsupportedVideo(Refusal):
    """Not a video, a corrupt or truncated one, or one this build cannot read."""


class VideoTooLong(Refusal):
    """A video longer than the duration limit."""


class VideoFrameTooLarge(Refusal):
    """A video whose frames are over the pixel limit of photos."""


class JobNotFound(Refusal):
    """No such job (or not one of this API key's)."""


class JobNotFinished(Refusal):
    """The job's result was asked for before it was done."""


class TooManyJobs(Refusal):
    """As many video jobs wait as the service queues."""


class QueueUnavailable(Refusal):
    """The jobs' queue (Redis, or the SQLite file) cannot be reached."""


class InferenceUnavailable(Refusal):
    """The inference process of the several-process layout is not ready or cannot be
    reached (starting, restarting)."""
