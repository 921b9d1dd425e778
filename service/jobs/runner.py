"""Running video jobs in this process: worker threads on the queue, frames through the Batcher.

Each worker thread takes a message from the queue and runs its job: the
frames go through the process's Batcher in its background lane (photos
overtake them), the heartbeat reports progress every second, and the job
stops between frame batches when it is cancelled, given to another worker,
or when the process stops (then it is queued again, its run not counted).
Decoding and encoding run at a lower CPU priority than the process's
photos. The upkeep (stalled jobs, expiry, orphaned files) runs here too,
with or without worker threads.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import threading
from collections.abc import Callable

from model.anonymize import AnonymizeOptions
from model.errors import ExtdError
from model.options import PostprocessOptions, ScalePolicy
from model.video import Cancelled, VideoLimits, VideoOptions, anonymize_video, probe
from service import errors
from service.batching import Batcher
from service.jobs.store import STORE_ERRORS, JobRecord, JobStore, State
from service.metrics import Metrics
from service.registry import ModelRegistry

log = logging.getLogger(__name__)

# How often a running job reports, how often an idle SQLite queue is read, how often the upkeep
# runs.
BEAT_S, POLL_S, UPKEEP_S = 1.0, 0.5, 5.0
# Niceness of the threads that decode and encode videos (and of FFmpeg's threads they start).
JOB_NICENESS = 10


class JobRunner:
    """``workers`` threads running jobs (none in an API-only process), and the upkeep."""

    def __init__(
        self,
        store: JobStore,
        registry: ModelRegistry,
        batcher: Batcher,
        metrics: Metrics,
        *,
        workers: int,
        limits: VideoLimits,
    ) -> None:
        self.store = store
        self.registry = registry
        self.batcher = batcher
        self.metrics = metrics
        self.workers = workers
        self.limits = limits
        self._stopping = threading.Event()
        self._threads = [
            threading.Thread(target=self._work, name=f"video-jobs-{n}", daemon=True)
            for n in range(workers)
        ]
        self._threads.append(threading.Thread(target=self._upkeep, name="jobs-upkeep", daemon=True))

    def start(self) -> None:
        if self.workers:
            self.store.executor = self._execute
        for thread in self._threads:
            thread.start()

    def stop(self, timeout_s: float) -> None:
        """Stop taking jobs; running ones stop at their next frames and are queued again."""
        self._stopping.set()
        for thread in self._threads:
            if thread.is_alive():
                thread.join(timeout_s)

    def _work(self) -> None:
        with contextlib.suppress(OSError):  # a lower priority where the system allows it
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), JOB_NICENESS)
        queue = self.store.queue
        while not self._stopping.is_set():
            try:
                task = queue.dequeue()  # Redis waits for one up to a second; SQLite does not
            except Exception:
                log.exception("reading the job queue failed")
                task = None
            if task is None:
                self._stopping.wait(POLL_S)
            else:
                queue.execute(task)

    def _upkeep(self) -> None:
        while True:
            try:
                self.metrics.jobs_queued.set(self.store.maintain())
            except Exception:
                log.exception("the jobs' upkeep failed")
            if self._stopping.wait(UPKEEP_S):
                return

    def _execute(self, job_id: str, attempt: int) -> None:
        record = self.store.take(job_id, attempt)
        if record is None:
            return  # cancelled meanwhile, or another worker's
        log.info("job %s: run %d", job_id, attempt)
        lost = threading.Event()  # cancelled, or given to another worker
        ended = threading.Event()

        def beat() -> None:
            while not ended.wait(BEAT_S):
                try:
                    if not self.store.beat(record):
                        lost.set()
                        return
                except STORE_ERRORS:  # the store is away: keep running, report when it is back
                    log.warning("job %s: cannot report to the jobs' store", job_id)

        beating = threading.Thread(target=beat, name=f"job-{job_id}-beat", daemon=True)
        beating.start()
        try:
            self._anonymize(record, lambda: lost.is_set() or self._stopping.is_set())
        except (Cancelled, errors.ShuttingDown):
            self._interrupted(record, lost.is_set())
        except ExtdError as error:
            self._finish(record, "failed", str(error), error.reason)
        except Exception as error:  # a bug: the job fails, the worker goes on
            log.exception("job %s", job_id)
            self._finish(record, "failed", f"internal error ({type(error).__name__})", "internal")
        else:
            self._finish(record, "done")
        finally:
            ended.set()
            beating.join()

    def _finish(
        self, record: JobRecord, state: State, error: str | None = None, code: str | None = None
    ) -> None:
        if self.store.finish(record, state, error, code):
            self.metrics.jobs.labels(state).inc()
            log.info("job %s %s%s", record.id, state, f": {error}" if error else "")

    def _interrupted(self, record: JobRecord, lost: bool) -> None:
        if not lost:  # this process stops: another run takes it up
            self.store.release(record)
            return
        current = self.store.get(record.id)
        if current is not None and current.state == "cancelled":
            self.store.upload(record).unlink(missing_ok=True)
            self.metrics.jobs.labels("cancelled").inc()
            log.info("job %s cancelled", record.id)

    def _anonymize(self, record: JobRecord, cancelled: Callable[[], bool]) -> None:
        parameters = record.parameters
        model = self.registry.get(parameters["model"])
        if model is None:
            raise ExtdError(f"model {parameters['model']!r} is no longer loaded")
        upload = self.store.upload(record)
        record.frames_total = probe(upload, self.limits).frames

        def progress(done: int) -> None:
            record.frames_done = done
            self.metrics.video_frames.inc()

        anonymize_video(
            upload,
            self.store.result(record),
            model.detector,
            options=PostprocessOptions(**parameters["detection"]),
            policy=ScalePolicy(**parameters["policy"]),
            hiding=AnonymizeOptions(**parameters["hiding"]),
            video=VideoOptions(**parameters["video"]),
            run=functools.partial(self.batcher.run_background, model),
            progress=progress,
            cancelled=cancelled,
            limits=self.limits,
        )
