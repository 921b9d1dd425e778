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

from model.detector import Protocol
from model.errors import ImageError, ImageTooLargeError, TooManyScansError
from model.images import ImageHeader, Size, read_header
from model.inputs import InputPlan, PreparedImage, prepare
from model.options import PostprocessOptions, ScalePolicy
from model.paper_protocol import merge_found, paper_passes
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
    """A request's answer: per image, its header, its plan, its decoded pixels and its faces."""

    model: LoadedModel
    headers: list[ImageHeader]
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

    def read_headers(self, payloads: list[bytes]) -> list[ImageHeader]:
        """Each image's header, refusing one that is not a still image or is over the decoded
        pixel limit. No pixel is decoded (a millisecond or so each); run it off the event
        loop."""
        headers = []
        for index, data in enumerate(payloads):
            try:
                headers.append(read_header(data, max_pixels=self.settings.max_image_pixels))
            except ImageError as error:
                raise self._image_error(index, error) from error
        return headers

    def plan(
        self, headers: list[ImageHeader], model: LoadedModel, policy: ScalePolicy
    ) -> list[InputPlan]:
        """Refuse, from the headers and the parameters alone, what would cost too much: an
        image over the network-input pixel limit, or a request over its total."""
        settings, total, plans = self.settings, 0, []
        for index, header in enumerate(headers):
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

    def _paper_plans(self, headers: list[ImageHeader], model: LoadedModel) -> list[InputPlan]:
        """The input of every pass of the paper protocol over these images (each within the
        paper's area bound, so within any sane ``max_input_pixels``)."""
        return [
            model.detector.plan(header.size, ScalePolicy(scale=p.scale))
            for header in headers
            for p in paper_passes(*header.size)
        ]

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
                keep_alpha=full_size,
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
        protocol: Protocol = "single",
    ) -> Detection:
        """Plan, reserve queue room, decode, queue and wait; refusals come first and cheap.

        Images are decoded only as large as the network needs them, unless
        ``full_size`` (to draw on them or hide their faces: with their alpha, if any).
        With the ``paper`` protocol each of an image's passes (several scales and a flip)
        goes through the batcher as an image of its own, and their faces are merged by box
        voting, a face only one pass found kept (the faces to hide, not the AP's rule).
        """
        started = time.perf_counter()
        ticket = self._ticket(timeout_ms)
        headers = await asyncio.to_thread(self.read_headers, payloads)
        plans = self.plan(headers, model, policy)
        loop = asyncio.get_running_loop()
        runs = plans if protocol == "single" else self._paper_plans(headers, model)
        full_size = full_size or protocol == "paper"  # the passes enlarge the image
        pixels = sum(plan.input_pixels for plan in runs)
        with self.batcher.reserve(len(runs), pixels, ticket.deadline) as reservation:
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
            queued = items
            if protocol == "paper":
                planned = [model.detector.paper_items(item.pixels.numpy()) for item in items]
                queued = [image for _, passes in planned for image in passes]
            futures = self.batcher.submit(reservation, model, queued, options, ticket)
        faces = await self._wait([asyncio.wrap_future(f) for f in futures], ticket, is_disconnected)
        if protocol == "paper":
            found = iter(faces)
            faces = [
                merge_found(
                    [next(found) for _ in passes], passes, options.max_faces, keep_single=True
                )
                for passes, _ in planned
            ]
        done = time.perf_counter()
        timings = {
            "decode": (decoded - started) * 1000,
            "detect": (done - decoded) * 1000,
            "total": (done - started) * 1000,
        }
        timings = {k: round(v, 2) for k, v in (timings | _stages(queued, timings)).items()}
        return Detection(model, headers, items, faces, timings)

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

    def abandon(self) -> None:
        """The drain's time is up: what is still queued or decoding is answered
        ``shutting_down``."""
        self.batcher.refuse_queued()
        self.decoders.close()

    def close(self) -> None:
        self.decoders.close()
        self.decode_pool.shutdown(wait=True, cancel_futures=True)


def _stages(items: list[PreparedImage], timings: dict[str, float]) -> dict[str, float]:
    """What ``detect`` was made of: the forward pass's stages (the longest of the request's
    passes, where its images ran in several) and the rest, the wait for the batcher."""
    stages = {
        stage: max(item.timings_ms.get(stage, 0.0) for item in items)
        for stage in ("resize", "network", "postprocess")
    }
    return {"queue": max(0.0, timings["detect"] - sum(stages.values())), **stages}


def _deadline() -> errors.DeadlineExceeded:
    return errors.DeadlineExceeded("the request's deadline passed before its faces were found")


def _retrieve(future: asyncio.Future) -> None:
    """Mark an abandoned result as seen, so asyncio does not log it as lost."""
    if not future.cancelled():
        future.exception()
