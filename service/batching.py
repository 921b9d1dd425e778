"""Dynamic batching: the one model runner of a process, with two lanes.

Request handlers submit prepared photos and await futures; the worker takes
up to ``max_batch_size`` images (waiting at most ``max_batch_delay_s`` for
more), drops those whose deadline passed or whose client left, groups the
rest by Detector and input size, and runs one forward pass per group. The
model never runs on the event loop.

Video frames come through the background lane (:meth:`Batcher.run_background`,
called from job threads): one forward pass at a time, and only when no photo
is queued, reserved or just answered, so a photo waits for at most one pass
of frames. Both lanes share the memory guard and the metrics.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, InvalidStateError
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

# After answering a photo, frames wait this long before they run: a client that sends its
# photos one after another has its next one queued by then, and never waits for a frame.
PHOTO_GRACE_S = 0.05
# Passes of smaller inputs do not count in the speed admission estimates with: a fixed cost
# per pass dominates them (a 1x1 input takes 11 ms, 10^4 times a megapixel's rate per
# pixel), and a request refused by that rate would wait for nothing. The start check's
# 128x128 is the smallest input measured.
MEASURED_MIN_PIXELS = 128 * 128


@dataclass
class Ticket:
    """Shared by the images of one request, so the request can be cancelled as a whole."""

    deadline: float
    cancelled: str | None = None  # why the request gave up waiting, if it did


@dataclass(eq=False)
class QueuedImage:
    """One image waiting for the worker, and the future its faces go to (a request awaits it
    through ``asyncio.wrap_future``; a job thread waits on it)."""

    model: LoadedModel
    item: PreparedImage
    options: PostprocessOptions
    ticket: Ticket
    background: bool = False  # a video frame
    future: Future = field(default_factory=Future)
    enqueued_at: float = field(default_factory=time.monotonic)

    def resolve(self, result: np.ndarray | None = None, error: Exception | None = None) -> None:
        try:
            if error is None:
                self.future.set_result(result)
            else:
                self.future.set_exception(error)
        except InvalidStateError:
            pass  # its request gave up and cancelled it


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
        self._queue: deque[QueuedImage] = deque()  # photos
        self._background: deque[QueuedImage] = deque()  # video frames
        self._reserved = 0
        self._photo_answered = -math.inf  # when the last photo batch ended (monotonic)
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

    def stop(self, timeout_s: float) -> None:
        """Take no new work, finish the queued photos (frames are refused: their jobs run
        again later), then end the worker."""
        with self._condition:
            self._stopping = True
            self._condition.notify_all()
        self._refuse(self._background, "the service stopped before this frame was run")
        self._thread.join(timeout_s)

    def refuse_queued(self) -> None:
        """Take no new work and answer everything still queued with :class:`ShuttingDown`."""
        with self._condition:
            self._stopping = True
            self._queued_pixels = 0
            self.metrics.queue_depth.set(0)
            self._condition.notify_all()
        for lane in (self._queue, self._background):
            self._refuse(lane, "the service stopped before this image was run")

    def _refuse(self, lane: deque[QueuedImage], why: str) -> None:
        with self._condition:
            refused = list(lane)
            lane.clear()
        for image in refused:
            self.metrics.cancelled.labels("stopping").inc()
            image.resolve(error=errors.ShuttingDown(why))

    @contextmanager
    def reserve(self, count: int, pixels: int, deadline: float) -> Iterator[Reservation]:
        """Hold queue room for a request's images (``pixels`` of network input) before they
        are decoded, so that a refusal costs no decoding: :class:`~service.errors.QueueFull`
        when the queue is full or when the work ahead of it, at the measured speed, would
        not leave it time to finish by ``deadline`` (``time.monotonic()``); or
        :class:`~service.errors.ShuttingDown`. Room not used by :meth:`submit` is given back
        on exit. Frames wait while room is reserved."""
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
                self._condition.notify()  # frames may go, if this was the last photo

    def submit(
        self,
        reservation: Reservation,
        model: LoadedModel,
        items: list[PreparedImage],
        options: PostprocessOptions,
        ticket: Ticket,
    ) -> list[Future]:
        """Queue a request's photos into the room it reserved."""
        queued = [QueuedImage(model, item, options, ticket) for item in items]
        with self._condition:
            if self._stopping:
                raise errors.ShuttingDown("the service is shutting down")
            if len(queued) > reservation.count:
                raise ValueError(f"{len(queued)} images for a reservation of {reservation.count}")
            pixels = sum(item.plan.input_pixels for item in items)
            reservation.count -= len(queued)
            reservation.pixels -= pixels
            self._reserved -= len(queued)
            self._reserved_pixels -= pixels
            self._queued_pixels += pixels
            self._queue.extend(queued)
            self.metrics.queue_depth.set(len(self._queue))
            self._condition.notify()
        return [image.future for image in queued]

    def run_background(
        self,
        model: LoadedModel,
        items: Sequence[PreparedImage],
        options: Sequence[PostprocessOptions],
    ) -> list[np.ndarray]:
        """Faces of each video frame, run in the background lane (photos overtake them);
        blocks the calling job thread until they are found. :class:`ShuttingDown` when the
        service stops first."""
        ticket = Ticket(deadline=math.inf)
        queued = [
            QueuedImage(model, item, option, ticket, background=True)
            for item, option in zip(items, options, strict=True)
        ]
        with self._condition:
            if self._stopping:
                raise errors.ShuttingDown("the service is shutting down")
            self._background.extend(queued)
            self._condition.notify()
        return [image.future.result() for image in queued]

    def _frames_wait_s(self) -> float | None:
        """How long frames must still wait for photos: None while photos are queued or being
        decoded (a notify wakes the worker), else what is left of the grace after the last
        photo."""
        if self._queue or self._reserved:
            return None
        return self._photo_answered + PHOTO_GRACE_S - time.monotonic()

    def _next_batch(self) -> list[QueuedImage] | None:
        """The next batch: photos first, else one forward pass of frames; None once stopping,
        and an empty one when the worker has been idle long enough to release memory
        (outside the lock: submits are not held up)."""
        with self._condition:
            while not self._queue:
                if self._stopping:
                    return None
                frames_wait = self._frames_wait_s() if self._background else None
                if frames_wait is not None and frames_wait <= 0:
                    return self._take_frames()
                due_in = self.memory.due_in()
                if due_in == 0:
                    return []
                waits = [w for w in (due_in, frames_wait) if w is not None]
                self._condition.wait(min(waits) if waits else None)
            fill_until = time.monotonic() + self.max_batch_delay_s
            while len(self._queue) < self.max_batch_size and not self._stopping:
                remaining = fill_until - time.monotonic()
                if remaining <= 0:
                    break
                self._condition.wait(remaining)
            batch = [
                self._queue.popleft() for _ in range(min(self.max_batch_size, len(self._queue)))
            ]
            self._running_pixels = sum(image.item.plan.input_pixels for image in batch)
            self._queued_pixels -= self._running_pixels
            self.metrics.queue_depth.set(len(self._queue))
            return batch

    def _take_frames(self) -> list[QueuedImage]:
        """The oldest frame and those after it that share its model and shape, as many as one
        forward pass holds (called with the lock held)."""
        first = self._background[0]
        room = first.model.detector.images_per_pass(first.item.input_shape)
        batch = []
        while self._background and len(batch) < room:
            image = self._background[0]
            if image.model is not first.model or image.item.input_shape != first.item.input_shape:
                break
            batch.append(self._background.popleft())
        self._running_pixels = sum(image.item.plan.input_pixels for image in batch)
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
                for image in batch:
                    image.resolve(error=error)
            finally:
                with self._condition:
                    self._running_pixels = 0
                    if not batch[0].background:
                        self._photo_answered = time.monotonic()

    def _measured(self, seconds_per_pixel: float) -> None:
        """Fold one batch's speed into the moving average admission estimates with."""
        previous = self.seconds_per_pixel
        self.seconds_per_pixel = (
            seconds_per_pixel if previous is None else 0.8 * previous + 0.2 * seconds_per_pixel
        )

    def _run(self, batch: list[QueuedImage]) -> None:
        now = time.monotonic()
        groups: dict[tuple[int, tuple[int, int]], list[QueuedImage]] = defaultdict(list)
        for image in batch:
            if image.ticket.cancelled:
                self.metrics.cancelled.labels(image.ticket.cancelled).inc()
                image.resolve(error=errors.ClientClosed(image.ticket.cancelled))
            elif now > image.ticket.deadline:
                self.metrics.cancelled.labels("deadline").inc()
                image.resolve(error=errors.DeadlineExceeded("deadline passed while queued"))
            else:
                self.metrics.queue_wait.labels(image.model.name).observe(now - image.enqueued_at)
                groups[(id(image.model.detector), image.item.input_shape)].append(image)
        for images in groups.values():
            model = images[0].model
            started = time.monotonic()
            try:
                results = model.detector.run(
                    [image.item for image in images], [image.options for image in images]
                )
            except Exception as error:
                log.exception("inference failed for model %s", model.name)
                for image in images:
                    image.resolve(error=error)
                continue
            elapsed = time.monotonic() - started
            pixels = images[0].item.plan.input_pixels
            if pixels >= MEASURED_MIN_PIXELS:
                self._measured(elapsed / (len(images) * pixels))
            self.memory.ran(model.detector, images[0].item.input_shape)
            self.metrics.inference_duration.labels(model.name).observe(elapsed)
            self.metrics.batch_size.labels(model.name).observe(len(images))
            self.metrics.images.labels(model.name).inc(len(images))
            for image, faces in zip(images, results, strict=True):
                self.metrics.faces_per_image.labels(model.name).observe(len(faces))
                image.resolve(faces)
