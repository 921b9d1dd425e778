"""From uploaded bytes to faces: decode off the loop, queue, wait, map errors to problems."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from model.images import ImageError, ImageTooLargeError, image_size, open_image
from model.options import PostprocessOptions, ScalePolicy
from service.batching import (
    Batcher,
    CancelledError,
    DeadlineExceededError,
    QueueFullError,
    StoppingError,
    Ticket,
)
from service.config import Settings
from service.metrics import Metrics
from service.problems import RETRY, ProblemError
from service.registry import LoadedModel, ModelRegistry

DISCONNECT_POLL_S = 0.05


@dataclass(frozen=True)
class Detection:
    model: LoadedModel
    sizes: list[tuple[int, int]]  # upright (width, height) of each image, as uploaded
    pixels: list[np.ndarray]  # decoded, smaller than sizes unless full_size was asked for
    faces: list[np.ndarray]
    timings_ms: dict[str, float]


@dataclass(frozen=True)
class Plan:
    """What an image will cost, from its header: its upright size and network input size."""

    width: int
    height: int
    resized: tuple[int, int]


class Pipeline:
    def __init__(
        self, settings: Settings, registry: ModelRegistry, batcher: Batcher, metrics: Metrics
    ) -> None:
        self.settings = settings
        self.registry = registry
        self.batcher = batcher
        self.metrics = metrics
        self.decode_pool = ThreadPoolExecutor(settings.decode_threads, thread_name_prefix="decode")

    def model(self, name: str | None) -> LoadedModel:
        name = name or self.registry.default_name
        model = self.registry.get(name) if name else None
        if model is None:
            known = ", ".join(m.name for m in self.registry.all()) or "none"
            raise ProblemError(
                404, "model_not_found", f"no model {name!r} is loaded (loaded: {known})"
            )
        return model

    def _refuse(self, reason: str, status: int, code: str, detail: str, **extra) -> ProblemError:
        """Count a refusal by reason and build the problem that answers it."""
        self.metrics.rejected.labels(reason).inc()
        return ProblemError(status, code, detail, **extra)

    def _stopping(self, error: StoppingError) -> ProblemError:
        return self._refuse("stopping", 503, "shutting_down", str(error), headers=RETRY)

    def _image_error(self, index: int, error: ImageError) -> ProblemError:
        if isinstance(error, ImageTooLargeError):
            return self._refuse(
                "image_too_large",
                413,
                "image_too_large",
                f"image {index}: {error}",
                index=index,
                limit=self.settings.max_image_pixels,
            )
        detail = f"image {index}: {error}"
        return self._refuse("bad_image", 415, "unsupported_image", detail, index=index)

    def _plan(self, payloads: list[bytes], model: LoadedModel, policy: ScalePolicy) -> list[Plan]:
        """Refuse, from the headers and the parameters alone, what would cost too much:
        an image over the decoded or network-input pixel limits, or a request over its total."""
        settings, total, plans = self.settings, 0, []
        for index, data in enumerate(payloads):
            try:
                width, height = image_size(data, max_pixels=settings.max_image_pixels)
            except ImageError as error:
                raise self._image_error(index, error) from error
            total += width * height
            resized, (rows, cols) = model.detector.sizes(height, width, policy)
            plans.append(Plan(width, height, resized))
            if rows * cols > settings.max_input_pixels:
                raise self._refuse(
                    "input_too_large",
                    413,
                    "input_too_large",
                    f"image {index} would run at {cols}x{rows} = {rows * cols} network input "
                    f"pixels, over the limit of {settings.max_input_pixels}: lower scale or "
                    "set max_side",
                    index=index,
                    limit=settings.max_input_pixels,
                )
        if total > settings.max_request_pixels:
            raise self._refuse(
                "request_too_large",
                413,
                "request_too_large",
                f"the images hold {total} pixels together, over the limit of "
                f"{settings.max_request_pixels}: send fewer or smaller images per request",
                limit=settings.max_request_pixels,
            )
        return plans

    def _decode(
        self, index: int, data: bytes, ticket: Ticket, at_least: tuple[int, int] | None
    ) -> np.ndarray:
        """Decode one image on a pool thread, unless its request has already given up;
        JPEGs at the smallest DCT scale that still covers ``at_least`` (width, height)."""
        if ticket.cancelled or time.monotonic() > ticket.deadline:
            raise self._deadline()
        started = time.perf_counter()
        try:
            pixels = open_image(data, max_pixels=self.settings.max_image_pixels, at_least=at_least)
        except ImageError as error:
            raise self._image_error(index, error) from error
        self.metrics.preprocess_duration.observe(time.perf_counter() - started)
        return pixels

    def _deadline(self) -> ProblemError:
        detail = "the request's deadline passed before its faces were found"
        return self._refuse("deadline", 504, "deadline_exceeded", detail)

    def _ticket(self, timeout_ms: int | None) -> Ticket:
        limit_ms = int(self.settings.drain_timeout_s * 1000)
        if timeout_ms is not None and timeout_ms > limit_ms:
            raise ProblemError(
                422,
                "invalid_parameters",
                f"timeout_ms must be at most {limit_ms} (EXTD_DRAIN_TIMEOUT_S): a shutdown "
                "lets accepted requests run that long",
                limit=limit_ms,
            )
        return Ticket(time.monotonic() + (timeout_ms or self.settings.request_timeout_ms) / 1000)

    async def detect(
        self,
        payloads: list[bytes],
        *,
        model: LoadedModel,
        options: PostprocessOptions,
        policy: ScalePolicy,
        timeout_ms: int | None,
        is_disconnected: Callable[[], Awaitable[bool]],
        full_size: bool = False,
    ) -> Detection:
        """Check, reserve queue room, decode, queue and wait; refusals come first and cheap.

        Images are decoded only as large as the network needs them, unless
        ``full_size`` (to draw on them).
        """
        started = time.perf_counter()
        ticket = self._ticket(timeout_ms)
        plans = self._plan(payloads, model, policy)
        loop = asyncio.get_running_loop()
        try:
            with self.batcher.reserve(len(payloads)) as reservation:
                decoding = [
                    loop.run_in_executor(
                        self.decode_pool,
                        self._decode,
                        i,
                        data,
                        ticket,
                        None if full_size else plan.resized[::-1],
                    )
                    for i, (data, plan) in enumerate(zip(payloads, plans, strict=True))
                ]
                outcomes = await asyncio.gather(*decoding, return_exceptions=True)
                for outcome in outcomes:  # report the first bad image by index
                    if isinstance(outcome, BaseException):
                        raise outcome
                pixels = list(outcomes)
                items = [
                    model.detector.prepare_array(p, policy, size=(plan.height, plan.width))
                    for p, plan in zip(pixels, plans, strict=True)
                ]
                decoded = time.perf_counter()
                futures = self.batcher.submit(reservation, model, items, options, ticket)
        except QueueFullError as error:
            detail = f"server busy: {error}"
            raise self._refuse("queue_full", 429, "queue_full", detail, headers=RETRY) from error
        except StoppingError as error:
            raise self._stopping(error) from error
        faces = await self._wait(futures, ticket, is_disconnected)
        done = time.perf_counter()
        timings = {
            "decode": (decoded - started) * 1000,
            "detect": (done - decoded) * 1000,
            "total": (done - started) * 1000,
        }
        sizes = [(plan.width, plan.height) for plan in plans]
        return Detection(model, sizes, pixels, faces, {k: round(v, 2) for k, v in timings.items()})

    async def _wait(
        self,
        futures: list[asyncio.Future],
        ticket: Ticket,
        is_disconnected: Callable[[], Awaitable[bool]],
    ) -> list[np.ndarray]:
        gathered = asyncio.gather(*futures)
        try:
            while True:
                remaining = ticket.deadline - time.monotonic()
                if remaining <= 0:
                    raise DeadlineExceededError("deadline passed")
                done, _ = await asyncio.wait({gathered}, timeout=min(DISCONNECT_POLL_S, remaining))
                if done:
                    return gathered.result()
                if await is_disconnected():
                    raise CancelledError("client went away")
        except DeadlineExceededError as error:
            raise self._deadline() from error
        except CancelledError as error:
            raise ProblemError(499, "client_closed", "client closed the connection") from error
        except StoppingError as error:
            raise self._stopping(error) from error
        finally:
            if not gathered.done():
                ticket.cancelled = (
                    "deadline" if time.monotonic() >= ticket.deadline else "disconnected"
                )
                gathered.cancel()
                gathered.add_done_callback(_retrieve)

    def close(self) -> None:
        self.decode_pool.shutdown(wait=True, cancel_futures=True)


def _retrieve(future: asyncio.Future) -> None:
    """Mark an abandoned result as seen, so asyncio does not log it as lost."""
    if not future.cancelled():
        future.exception()
