"""Dynamic batching: a bounded queue of images and one worker thread.

Request handlers submit prepared images and await futures; the worker takes
up to ``max_batch_size`` images (waiting at most ``max_batch_delay_s`` for
more), drops those whose deadline passed or whose client left, groups the
rest by Detector and input size, and runs one forward pass per group. The
model never runs on the event loop.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np

from model.detector import Detector
from model.inputs import PreparedImage
from model.options import PostprocessOptions
from service import errors
from service.metrics import Metrics
from service.registry import LoadedModel

log = logging.getLogger(__name__)


@dataclass
class Ticket:
    """Shared by the images of one request, so the request can be cancelled as a whole."""

    deadline: float
    cancelled: str | None = None  # why the request gave up waiting, if it did


@dataclass(eq=False)
class Job:
    """One image waiting for the worker; the worker settles its future on the request's loop."""

    model: LoadedModel
    item: PreparedImage
    options: PostprocessOptions
    ticket: Ticket
    future: asyncio.Future
    loop: asyncio.AbstractEventLoop
    enqueued_at: float = field(default_factory=time.monotonic)

    def resolve(self, result: np.ndarray | None = None, error: Exception | None = None) -> None:
        def settle() -> None:
            if self.future.done():
                return
            if error is None:
                self.future.set_result(result)
            else:
                self.future.set_exception(error)

        self.loop.call_soon_threadsafe(settle)


@dataclass
class Reservation:
    """Queue room held for a request while its images are decoded."""

    count: int
    pixels: int  # network input pixels of those images


class MemoryGuard:
    """Models give back what unusual inputs made them keep, once the worker has been idle.

    Backends keep buffers sized for the largest shape they ran and an entry per
    shape (OpenVINO: about 1.1 GB per megapixel of input in fp32, 1.5 MB per new size),
    and the tuned heap keeps freed memory. The shapes the service warmed up
    stay. After any other shape, the models that ran it release everything
    once no image has come for ``idle_s``: a burst of large photos keeps its
    buffers while it lasts, and an idle service returns to its size at rest.
    A stream of ever new sizes (about 11 MB each) is released every
    ``NEW_SHAPES`` sizes, idle or not.
    """

    NEW_SHAPES = 16

    def __init__(self, steady_shapes: Callable[[], set[tuple[int, int]]], idle_s: float) -> None:
        self.steady_shapes = steady_shapes
        self.idle_s = idle_s
        self._new: dict[Detector, set[tuple[int, int]]] = defaultdict(set)
        self._since = 0.0

    def ran(self, detector: Detector, shape: tuple[int, int]) -> None:
        if shape not in self.steady_shapes():
            self._new[detector].add(shape)
        self._since = time.monotonic()

    def due_in(self) -> float | None:
        """Seconds of idleness still needed before a release, or None when none is pending."""
        if not self._new:
            return None
        if max(len(shapes) for shapes in self._new.values()) >= self.NEW_SHAPES:
            return 0.0
        return max(0.0, self._since + self.idle_s - time.monotonic())

    def release(self) -> None:
        for detector in self._new:
            log.info("releasing the memory kept for unusual input sizes")
            detector.release_memory()
        self._new.clear()


class Batcher:
    """Collects images from many requests so the network runs on batches, not single images."""

    def __init__(
        self,
        *,
        max_batch_size: int,
        max_batch_delay_s: float,
        capacity: int,
        metrics: Metrics,
        steady_shapes: Callable[[], set[tuple[int, int]]],
        release_idle_s: float,
    ) -> None:
        self.max_batch_size = max_batch_size
        self.max_batch_delay_s = max_batch_delay_s
        self.capacity = capacity
        self.metrics = metrics
        self._queue: deque[Job] = deque()
        self._reserved = 0
        # Network input pixels queued, reserved and being run, and the measured seconds a
        # pixel costs (a moving average over batches): what deadline-aware admission uses.
        self._queued_pixels = self._reserved_pixels = self._running_pixels = 0
        self.seconds_per_pixel: float | None = None
        self.memory = MemoryGuard(steady_shapes, release_idle_s)
        self._condition = threading.Condition()
        self._stopping = False
        self._thread = threading.Thread(target=self._work, name="batch-worker", daemon=True)

    def start(self) -> None:
        self._thread.start()

    @property
    def waiting(self) -> bool:
        """Whether images are queued or about to be (what lower-priority work yields to)."""
        return bool(self._queue or self._reserved)

    def stop(self, timeout_s: float) -> None:
        """Take no new work, finish what is queued, then end the worker."""
        with self._condition:
            self._stopping = True
            self._condition.notify_all()
        self._thread.join(timeout_s)

    def refuse_queued(self) -> None:
        """Take no new work and answer everything still queued with :class:`ShuttingDown`."""
        with self._condition:
            self._stopping = True
            refused = list(self._queue)
            self._queue.clear()
            self._queued_pixels = 0
            self.metrics.queue_depth.set(0)
            self._condition.notify_all()
        for job in refused:
            self.metrics.cancelled.labels("stopping").inc()
            job.resolve(error=errors.ShuttingDown("the service stopped before this image was run"))

    @contextmanager
    def reserve(self, count: int, pixels: int, deadline: float) -> Iterator[Reservation]:
        """Hold queue room for a request's images (``pixels`` of network input) before they
        are decoded, so that a refusal costs no decoding: :class:`~service.errors.QueueFull`
        when the queue is full or when the work ahead of it, at the measured speed, would
        not leave it time to finish by ``deadline`` (``time.monotonic()``); or
        :class:`~service.errors.ShuttingDown`. Room not used by :meth:`submit` is given back
        on exit."""
        with self._condition:
            if self._stopping:
                raise errors.ShuttingDown("the service is shutting down")
            taken = len(self._queue) + self._reserved
            if taken + count > self.capacity:
                raise errors.QueueFull(
                    f"server busy: {taken} images queued, room for {self.capacity - taken}"
                )
            ahead = self._queued_pixels + self._reserved_pixels + self._running_pixels
            if ahead and self.seconds_per_pixel:
                wait = ahead * self.seconds_per_pixel
                if time.monotonic() + wait + pixels * self.seconds_per_pixel > deadline:
                    raise errors.QueueFull(
                        f"server busy: the work queued ahead takes about {wait:.1f} s, it "
                        "would not leave this request time to finish within its deadline",
                        retry_after_s=wait,
                    )
            self._reserved += count
            self._reserved_pixels += pixels
        reservation = Reservation(count, pixels)
        try:
            yield reservation
        finally:
            with self._condition:
                self._reserved -= reservation.count
                self._reserved_pixels -= reservation.pixels

    def submit(
        self,
        reservation: Reservation,
        model: LoadedModel,
        items: list[PreparedImage],
        options: PostprocessOptions,
        ticket: Ticket,
    ) -> list[asyncio.Future]:
        """Queue a request's images into the room it reserved."""
        loop = asyncio.get_running_loop()
        jobs = [Job(model, item, options, ticket, loop.create_future(), loop) for item in items]
        with self._condition:
            if self._stopping:
                raise errors.ShuttingDown("the service is shutting down")
            if len(jobs) > reservation.count:
                raise ValueError(f"{len(jobs)} images for a reservation of {reservation.count}")
            pixels = sum(item.plan.input_pixels for item in items)
            reservation.count -= len(jobs)
            reservation.pixels -= pixels
            self._reserved -= len(jobs)
            self._reserved_pixels -= pixels
            self._queued_pixels += pixels
            self._queue.extend(jobs)
            self.metrics.queue_depth.set(len(self._queue))
            self._condition.notify()
        return [job.future for job in jobs]

    def _next_batch(self) -> list[Job] | None:
        """The next batch; None once stopping, and an empty one when the worker has been
        idle long enough to release memory (outside the lock: submits are not held up)."""
        with self._condition:
            while not self._queue:
                if self._stopping:
                    return None
                due_in = self.memory.due_in()
                if due_in == 0:
                    return []
                self._condition.wait(due_in)
            fill_until = time.monotonic() + self.max_batch_delay_s
            while len(self._queue) < self.max_batch_size and not self._stopping:
                remaining = fill_until - time.monotonic()
                if remaining <= 0:
                    break
                self._condition.wait(remaining)
            batch = [
                self._queue.popleft() for _ in range(min(self.max_batch_size, len(self._queue)))
            ]
            self._running_pixels = sum(job.item.plan.input_pixels for job in batch)
            self._queued_pixels -= self._running_pixels
            self.metrics.queue_depth.set(len(self._queue))
            return batch

    def _work(self) -> None:
        while (batch := self._next_batch()) is not None:
            if not batch or self.memory.due_in() == 0:
                self.memory.release()
            if not batch:
                continue
            try:
                self._run(batch)
            except Exception as error:  # keep serving whatever one batch did
                log.exception("batch failed")
                for job in batch:
                    job.resolve(error=error)
            finally:
                with self._condition:
                    self._running_pixels = 0

    def _measured(self, seconds_per_pixel: float) -> None:
        """Fold one batch's speed into the moving average admission estimates with."""
        previous = self.seconds_per_pixel
        self.seconds_per_pixel = (
            seconds_per_pixel if previous is None else 0.8 * previous + 0.2 * seconds_per_pixel
        )

    def _run(self, batch: list[Job]) -> None:
        now = time.monotonic()
        groups: dict[tuple[int, tuple[int, int]], list[Job]] = defaultdict(list)
        for job in batch:
            if job.ticket.cancelled:
                self.metrics.cancelled.labels(job.ticket.cancelled).inc()
                job.resolve(error=errors.ClientClosed(job.ticket.cancelled))
            elif now > job.ticket.deadline:
                self.metrics.cancelled.labels("deadline").inc()
                job.resolve(error=errors.DeadlineExceeded("deadline passed while queued"))
            else:
                self.metrics.queue_wait.labels(job.model.name).observe(now - job.enqueued_at)
                groups[(id(job.model.detector), job.item.input_shape)].append(job)
        for jobs in groups.values():
            model = jobs[0].model
            started = time.monotonic()
            try:
                results = model.detector.run([j.item for j in jobs], [j.options for j in jobs])
            except Exception as error:
                log.exception("inference failed for model %s", model.name)
                for job in jobs:
                    job.resolve(error=error)
                continue
            elapsed = time.monotonic() - started
            self._measured(elapsed / (len(jobs) * jobs[0].item.plan.input_pixels))
            self.memory.ran(model.detector, jobs[0].item.input_shape)
            self.metrics.inference_duration.labels(model.name).observe(elapsed)
            self.metrics.batch_size.labels(model.name).observe(len(jobs))
            self.metrics.images.labels(model.name).inc(len(jobs))
            for job, faces in zip(jobs, results, strict=True):
                self.metrics.faces_per_image.labels(model.name).observe(len(faces))
                job.resolve(faces)
