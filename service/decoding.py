"""Decoding uploads in worker processes that can be killed.

A hostile image can cost seconds of CPU within every limit that can be read
off its header (a large progressive JPEG of many scans, say). A thread
cannot be stopped, so a decode that outlives its request's deadline would
hold a decoder for others. Here each decode runs in one of a few long-lived
processes (numpy, Pillow and libjpeg-turbo only: no torch); one that passes
its deadline is killed and replaced, and its request answered at once. A
crash of the decoder (a bug in a codec) costs that request only.
"""

from __future__ import annotations

import logging
import multiprocessing
import queue
import threading
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection

import numpy as np

from model.errors import ImageError
from model.images import Size, open_image

log = logging.getLogger(__name__)

# The workers are started fresh (not forked from a process holding threads and models).
_CONTEXT = multiprocessing.get_context("spawn")


class DecodeTimeout(Exception):
    """The deadline passed: waiting for a decoder, or decoding (``killed``: that decoder was
    replaced)."""

    def __init__(self, message: str, *, killed: bool) -> None:
        super().__init__(message)
        self.killed = killed


class DecodersStopped(Exception):
    """The pool was closed (the service is stopping) while the decode waited or ran."""


def _serve(connection: Connection) -> None:
    """A worker's loop: ``(data, at_least, max_pixels, keep_alpha)`` in, pixels or an
    ImageError out."""
    while True:
        try:
            data, at_least, max_pixels, keep_alpha = connection.recv()
        except EOFError:
            return
        try:
            pixels = open_image(
                data, max_pixels=max_pixels, at_least=at_least, keep_alpha=keep_alpha
            )
            connection.send(pixels)
        except ImageError as error:
            connection.send(error)


@dataclass(eq=False)
class _Worker:
    process: multiprocessing.process.BaseProcess
    connection: Connection

    @classmethod
    def start(cls) -> _Worker:
        ours, theirs = _CONTEXT.Pipe()
        process = _CONTEXT.Process(target=_serve, args=(theirs,), name="decoder", daemon=True)
        process.start()
        theirs.close()
        return cls(process, ours)

    def stop(self) -> None:
        self.process.kill()
        self.process.join(5)
        self.connection.close()


class DecoderPool:
    """``workers`` decoding processes shared by all requests."""

    def __init__(self, workers: int) -> None:
        self._idle: queue.Queue[_Worker] = queue.Queue()
        self._busy: set[_Worker] = set()
        self._lock = threading.Lock()
        self._closed = False
        for _ in range(workers):
            self._idle.put(_Worker.start())

    def decode(
        self,
        data: bytes,
        *,
        at_least: Size | None,
        max_pixels: int | None,
        deadline: float,
        keep_alpha: bool = False,
    ) -> np.ndarray:
        """The upright RGB (or RGBA) pixels (:func:`model.images.open_image`), or
        :class:`DecodeTimeout` once ``deadline`` (``time.monotonic()``) passes, waiting for a
        worker included."""
        try:
            worker = self._idle.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty as error:
            raise DecodeTimeout(
                "every decoder was busy until the deadline", killed=False
            ) from error
        with self._lock:
            if self._closed:
                worker.stop()
                raise DecodersStopped("the decoders are stopping")
            self._busy.add(worker)
        replace = False
        try:
            worker.connection.send((data, at_least, max_pixels, keep_alpha))
            if not worker.connection.poll(max(0.0, deadline - time.monotonic())):
                replace = True
                raise DecodeTimeout("decoding did not finish before the deadline", killed=True)
            result = worker.connection.recv()
        except (EOFError, OSError) as error:
            replace = True
            if self._closed:
                raise DecodersStopped("the decoders stopped") from error
            log.error("a decoder process died on an upload; starting another")
            raise ImageError("the decoder failed on this image") from error
        finally:
            with self._lock:
                self._busy.discard(worker)
                if replace:
                    worker.stop()
                    worker = None if self._closed else _Worker.start()
                if worker is not None:
                    self._idle.put(worker)
        if isinstance(result, Exception):
            raise result
        return result

    def close(self) -> None:
        """Stop every worker; decodes still running fail with :class:`DecodersStopped`."""
        with self._lock:
            self._closed = True
            busy = list(self._busy)
        for worker in busy:
            worker.process.kill()
        while True:
            try:
                self._idle.get_nowait().stop()
            except queue.Empty:
                break
