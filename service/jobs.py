"""Video anonymization jobs: on disk, run in the background, after photos, across restarts.

Each job is a folder under ``EXTD_JOBS_DIR``: the upload, ``job.json``
(written atomically) and, once done, the result. A runner thread takes the
oldest queued job, claims it with a lock on its folder (several replicas may
share the folder: one runs a job, any serves its status and result) and
runs it frame batch by frame batch, letting queued photo requests go first.
A job whose runner died (a restart, a crash) is queued again: it starts over
and nothing of it is lost. Finished jobs are removed after a retention time.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import shutil
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from model.anonymize import AnonymizeOptions
from model.errors import ExtdError
from model.files import atomic_path
from model.options import PostprocessOptions, ScalePolicy
from model.video import Cancelled, VideoOptions, anonymize_video
from service.metrics import Metrics
from service.registry import ModelRegistry

log = logging.getLogger(__name__)

State = Literal["queued", "running", "done", "failed", "cancelled"]
FINISHED = ("done", "failed", "cancelled")
_RECORD, _LOCK, _CANCEL = "job.json", "lock", "cancel"
# How often a running job writes its progress, and how often the runner looks for work.
_PROGRESS_S, _POLL_S = 1.0, 0.5


@dataclass
class Job:
    """What a job is and how far it got (``job.json``)."""

    id: str
    suffix: str  # of the upload, and so of the result: the container is kept
    parameters: dict[str, Any]
    owner: str | None = None  # the API key that created it (its name), if keys are on
    state: State = "queued"
    frames_done: int = 0
    frames_total: int = 0
    error: str | None = None
    created: float = field(default_factory=time.time)
    updated: float = field(default_factory=time.time)
    attempts: int = 0

    @property
    def progress(self) -> float:
        if self.state == "done":
            return 1.0
        return min(1.0, self.frames_done / self.frames_total) if self.frames_total else 0.0


class JobStore:
    """The jobs folder: create, read, update and remove jobs, and claim one to run it."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)

    def _path(self, job_id: str) -> Path:
        return self.folder / job_id

    def upload(self, job: Job) -> Path:
        return self._path(job.id) / f"input{job.suffix}"

    def result(self, job: Job) -> Path:
        return self._path(job.id) / f"result{job.suffix}"

    def create(
        self, upload: Path, suffix: str, parameters: dict[str, Any], owner: str | None
    ) -> Job:
        """A queued job over ``upload`` (moved into the job's folder)."""
        job = Job(uuid.uuid4().hex, suffix, parameters, owner)
        staging = self.folder / f".{job.id}"
        staging.mkdir()
        shutil.move(upload, staging / f"input{suffix}")
        self._write(job, staging)
        os.replace(staging, self._path(job.id))  # visible to runners whole, or not at all
        return job

    def get(self, job_id: str) -> Job | None:
        if not job_id.isalnum():
            return None
        try:
            return Job(**json.loads((self._path(job_id) / _RECORD).read_text()))
        except (OSError, ValueError, TypeError):
            return None

    def save(self, job: Job) -> None:
        job.updated = time.time()
        self._write(job, self._path(job.id))

    @staticmethod
    def _write(job: Job, folder: Path) -> None:
        with atomic_path(folder / _RECORD) as scratch:
            scratch.write_text(json.dumps(asdict(job)))

    def sweep(self, older_than_s: float = 3600) -> None:
        """Remove what uploads and creations cut short (a crash) left behind."""
        cutoff = time.time() - older_than_s
        for path in self.folder.glob(".*"):
            with contextlib.suppress(OSError):
                if path.stat().st_mtime < cutoff:
                    shutil.rmtree(path) if path.is_dir() else path.unlink()

    def jobs(self) -> list[Job]:
        found = (self.get(p.name) for p in self.folder.iterdir() if not p.name.startswith("."))
        return sorted((job for job in found if job), key=lambda job: job.created)

    def remove(self, job: Job) -> None:
        shutil.rmtree(self._path(job.id), ignore_errors=True)

    def cancel(self, job: Job) -> None:
        """Ask the runner of a running job to stop (it removes the job); remove a job that
        does not run."""
        (self._path(job.id) / _CANCEL).touch()
        with self.claim(job) as claimed:
            if claimed:
                self.remove(job)

    def cancel_requested(self, job: Job) -> bool:
        return (self._path(job.id) / _CANCEL).exists()

    @contextlib.contextmanager
    def claim(self, job: Job) -> Iterator[bool]:
        """Hold the job's lock while in the block (True), unless another process holds it
        (False). The lock goes with the process, so a crashed runner frees its job."""
        try:
            handle = os.open(self._path(job.id) / _LOCK, os.O_CREAT | os.O_RDWR, 0o644)
        except FileNotFoundError:  # removed meanwhile
            yield False
            return
        try:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                yield False
                return
            yield True
        finally:
            os.close(handle)


class JobRunner:
    """The background thread that runs queued jobs one at a time."""

    def __init__(
        self,
        store: JobStore,
        registry: ModelRegistry,
        metrics: Metrics,
        *,
        retention_s: float,
        photos_waiting: Callable[[], bool],
    ) -> None:
        self.store = store
        self.registry = registry
        self.metrics = metrics
        self.retention_s = retention_s
        self.photos_waiting = photos_waiting
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="video-jobs", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout_s: float) -> None:
        """Stop between two frame batches; a job cut short is queued again for the next
        start (nothing of it is lost)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout_s)

    def _loop(self) -> None:
        while not self._stop.wait(_POLL_S):
            try:
                self._expire()
                self._run_next()
            except Exception:  # the runner must outlive any one job
                log.exception("video job runner")

    def _expire(self) -> None:
        self.store.sweep()
        cutoff = time.time() - self.retention_s
        for job in self.store.jobs():
            if job.state in FINISHED and job.updated < cutoff:
                with self.store.claim(job) as claimed:
                    if claimed:
                        self.store.remove(job)
                        log.info("removed job %s after the retention time", job.id)
        queued = sum(job.state == "queued" for job in self.store.jobs())
        self.metrics.jobs_queued.set(queued)

    def _run_next(self) -> None:
        for job in self.store.jobs():
            if job.state not in ("queued", "running"):
                continue
            with self.store.claim(job) as claimed:
                if not claimed:
                    continue  # another replica runs it
                current = self.store.get(job.id)  # fresh, now that it is ours
                if current is None or current.state in FINISHED:
                    continue
                if current.state == "running":
                    log.warning("job %s was interrupted (a restart?): it starts over", job.id)
                self._run(current)
                return

    def _run(self, job: Job) -> None:
        job.state, job.frames_done, job.attempts = "running", 0, job.attempts + 1
        self.store.save(job)
        last_save = time.monotonic()

        def progress(done: int) -> None:
            nonlocal last_save
            job.frames_done = done
            self.metrics.video_frames.inc()
            if time.monotonic() - last_save > _PROGRESS_S:
                self.store.save(job)
                last_save = time.monotonic()

        def cancelled() -> bool:
            while self.photos_waiting() and not self._stop.is_set():
                time.sleep(0.01)  # photos first: they are waited for
            return self._stop.is_set() or self.store.cancel_requested(job)

        try:
            job.frames_total = self._frames_total(job)
            self._anonymize(job, progress, cancelled)
        except Cancelled:
            if self.store.cancel_requested(job):
                self.metrics.jobs.labels("cancelled").inc()
                self.store.remove(job)
            else:  # the service stops: the job waits for the next start
                job.state = "queued"
                self.store.save(job)
            return
        except (ExtdError, OSError) as error:
            job.state, job.error = "failed", str(error)
            log.warning("job %s failed: %s", job.id, error)
        else:
            job.state = "done"
        self.metrics.jobs.labels(job.state).inc()
        self.store.save(job)

    def _frames_total(self, job: Job) -> int:
        from model.video import probe

        return probe(self.store.upload(job)).frames

    def _anonymize(
        self, job: Job, progress: Callable[[int], None], cancelled: Callable[[], bool]
    ) -> None:
        parameters = job.parameters
        model = self.registry.get(parameters["model"])
        if model is None:
            raise ExtdError(f"model {parameters['model']!r} is no longer loaded")
        anonymize_video(
            self.store.upload(job),
            self.store.result(job),
            model.detector,
            options=PostprocessOptions(**parameters["detection"]),
            policy=ScalePolicy(**parameters["policy"]),
            hiding=AnonymizeOptions(**parameters["hiding"]),
            video=VideoOptions(**parameters["video"]),
            progress=progress,
            cancelled=cancelled,
        )
