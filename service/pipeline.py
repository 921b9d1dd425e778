"""From uploaded bytes to faces: plan from the headers, refuse early, decode, queue, wait.

The pipeline speaks the service's own terms (:mod:`service.errors`), not
HTTP, so it runs and is tested without a web app.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

import numpy as np

from model.errors import ImageError, ImageTooLargeError, TooManyScansError
from model.images import Size, read_header
from model.inputs import InputPlan, PreparedImage, prepare
from model.options import PostprocessOptions, ScalePolicy
from service import errors
from service.batching import Batcher, Ticket
from service.config import Settings
from service.decoding import DecoderPool, DecodersStopped, DecodeTimeout
from service.metrics import Metrics
from service.registry import LoadedModel, ModelRegistry

DISCONNECT_POLL_S = 0.05
T = TypeVar("T")


@dataclass(frozen=True)
class Detection:
    """A request's answer: per image, its plan, its decoded pixels and its faces."""

    model: LoadedModel
    items: list[PreparedImage]  # pixels smaller than the plan's size unless full_size
    faces: list[np.ndarray]
    timings_ms: dict[str, float]

    @property
    def sizes(self) -> list[Size]:
        """Upright ``(height, width)`` of each image, as uploaded."""
        return [item.plan.size for item in self.items]


class Pipeline:
    def __init__(
        self, settings: Settings, registry: ModelRegistry, batcher: Batcher, metrics: Metrics
    ) -> None:
        self.settings = settings
        self.registry = registry
        self.batcher = batcher
        self.metrics = metrics
        # Threads wait on the decoder processes and do the requests' other pixel work.
        self.decode_pool = ThreadPoolExecutor(settings.decode_threads, thread_name_prefix="decode")
        self.decoders = DecoderPool(settings.decode_threads)

    def model(self, name: str | None) -> LoadedModel:
        name = name or self.registry.default_name
        model = self.registry.get(name) if name else None
        if model is None:
            known = ", ".join(m.name for m in self.registry.all()) or "none"
            raise errors.UnknownModel(f"no model {name!r} is loaded (loaded: {known})")
        return model

    def _image_error(self, index: int, error: ImageError) -> errors.Refusal:
        detail = f"image {index}: {error}"
        if isinstance(error, ImageTooLargeError):
            limit = self.settings.max_image_pixels
            return errors.ImageTooLarge(detail, index=index, limit=limit)
        if isinstance(error, TooManyScansError):
            return errors.TooManyScans(detail, index=index)
        return errors.UnsupportedImage(detail, index=index)

    def plan(
        self, payloads: list[bytes], model: LoadedModel, policy: ScalePolicy
    ) -> list[InputPlan]:
        """Refuse, from the headers and the parameters alone, what would cost too much: an
        image over the decoded or network-input pixel limits, or a request over its total.
        Reads headers only (a millisecond or so each); run it off the event loop."""
        settings, total, plans = self.settings, 0, []
        for index, data in enumerate(payloads):
            try:
                header = read_header(data, max_pixels=settings.max_image_pixels)
            except ImageError as error:
                raise self._image_error(index, error) from error
            total += header.width * header.height
            plan = model.detector.plan(header.size, policy)
            plans.append(plan)
            if plan.input_pixels > settings.max_input_pixels:
                rows, cols = plan.input_shape
                raise errors.InputTooLarge(
                    f"image {index} would run at {cols}x{rows} = {plan.input_pixels} network "
                    f"input pixels, over the limit of {settings.max_input_pixels}: lower scale "
                    "or set max_side",
                    index=index,
                    limit=settings.max_input_pixels,
                )
        if total > settings.max_request_pixels:
            raise errors.RequestTooLarge(
                f"the images hold {total} pixels together, over the limit of "
                f"{settings.max_request_pixels}: send fewer or smaller images per request",
                limit=settings.max_request_pixels,
            )
        return plans

    def decode_one(
        self, index: int, data: bytes, plan: InputPlan, ticket: Ticket, full_size: bool = False
    ) -> PreparedImage:
        """Decode one image in a decoder process (waited for on a pool thread), unless its
        request has already given up; abandoned, decoder and all, at the deadline."""
        if ticket.cancelled or time.monotonic() > ticket.deadline:
            raise _deadline()
        started = time.perf_counter()
        try:
            pixels = self.decoders.decode(
                data,
                at_least=None if full_size else plan.resized,
                max_pixels=self.settings.max_image_pixels,
                deadline=ticket.deadline,
            )
        except ImageError as error:
            raise self._image_error(index, error) from error
        except DecodeTimeout as error:
            if error.killed:
                self.metrics.decodes_abandoned.inc()
            raise _deadline() from error
        except DecodersStopped as error:
            raise errors.ShuttingDown("the service stopped while this image was decoded") from error
        self.metrics.preprocess_duration.observe(time.perf_counter() - started)
        return prepare(pixels, plan)

    def _ticket(self, timeout_ms: int | None) -> Ticket:
        limit_ms = int(self.settings.drain_timeout_s * 1000)
        if timeout_ms is not None and timeout_ms > limit_ms:
            raise errors.InvalidParameters(
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
        """Plan, reserve queue room, decode, queue and wait; refusals come first and cheap.

        Images are decoded only as large as the network needs them, unless
        ``full_size`` (to draw on them or hide their faces).
        """
        started = time.perf_counter()
        ticket = self._ticket(timeout_ms)
        plans = await asyncio.to_thread(self.plan, payloads, model, policy)
        loop = asyncio.get_running_loop()
        pixels = sum(plan.input_pixels for plan in plans)
        with self.batcher.reserve(len(payloads), pixels, ticket.deadline) as reservation:
            decoding = [
                loop.run_in_executor(
                    self.decode_pool, self.decode_one, i, data, plan, ticket, full_size
                )
                for i, (data, plan) in enumerate(zip(payloads, plans, strict=True))
            ]
            outcomes = await asyncio.gather(*decoding, return_exceptions=True)
            for outcome in outcomes:  # report the first bad image by index
                if isinstance(outcome, BaseException):
                    raise outcome
            items: list[PreparedImage] = list(outcomes)  # type: ignore[arg-type]
            decoded = time.perf_counter()
            futures = self.batcher.submit(reservation, model, items, options, ticket)
        faces = await self._wait(futures, ticket, is_disconnected)
        done = time.perf_counter()
        timings = {
            "decode": (decoded - started) * 1000,
            "detect": (done - decoded) * 1000,
            "total": (done - started) * 1000,
        }
        return Detection(model, items, faces, {k: round(v, 2) for k, v in timings.items()})

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
                    raise _deadline()
                done, _ = await asyncio.wait({gathered}, timeout=min(DISCONNECT_POLL_S, remaining))
                if done:
                    return gathered.result()
                if await is_disconnected():
                    raise errors.ClientClosed("client closed the connection")
        finally:
            if not gathered.done():
                ticket.cancelled = (
                    "deadline" if time.monotonic() >= ticket.deadline else "disconnected"
                )
                gathered.cancel()
                gathered.add_done_callback(_retrieve)

    async def offload(self, work: Callable[..., T], *args: object) -> T:
        """Run pixel work for a request (drawing, hiding faces, encoding) on the decode pool:
        off the event loop, within the bounded threads decoding has."""
        return await asyncio.get_running_loop().run_in_executor(self.decode_pool, work, *args)

    def abandon_decoding(self) -> None:
        """Stop the decoders: what they still decode is answered ``shutting_down`` (the drain's
        time is up)."""
        self.decoders.close()

    def close(self) -> None:
        self.decoders.close()
        self.decode_pool.shutdown(wait=True, cancel_futures=True)


def _deadline() -> errors.DeadlineExceeded:
    return errors.DeadlineExceeded("the request's deadline passed before its faces were found")


def _retrieve(future: asyncio.Future) -> None:
    """Mark an abandoned result as seen, so asyncio does not log it as lost."""
    if not future.cancelled():
        future.exception()
