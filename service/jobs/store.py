"""Video jobs: their records in the queue's store, their files in the jobs folder.

A job is a record (state, progress, owner, attempts, expiry) kept as JSON in
the key-value store of the task queue (huey's: SQLite under ``EXTD_JOBS_DIR``
by default, Redis with ``EXTD_QUEUE_URL``), a message in that queue, and a
folder under ``EXTD_JOBS_DIR`` with the upload and, once done, the result.
Every process that shares the store and the folder sees every job, so any API
replica answers for any job and any worker may run it.

A record changes state only under its lock (a key of the same store), so a
worker taking a job, a cancel and the reaper never cross. The worker running a
job writes a heartbeat (its attempt and progress) every second; a running job
whose heartbeat is older than the lease is queued again for another worker
(its attempt counted), or failed after ``max_attempts``: a video that kills
its worker cannot take the workers down for ever.
"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
import sqlite3
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from huey import Huey, RedisHuey, SqliteHuey
from huey.constants import EmptyData

from service import errors

log = logging.getLogger(__name__)

# What the queue's store raises when it cannot be reached or written.
STORE_ERRORS: tuple[type[Exception], ...] = (sqlite3.Error,)
with contextlib.suppress(ImportError):  # the embedded queue needs no Redis client
    from redis.exceptions import RedisError

    STORE_ERRORS += (RedisError,)

State = Literal["queued", "running", "done", "failed", "cancelled"]
FINISHED = ("done", "failed", "cancelled")
QUEUE_NAME = "extd_jobs"  # in Redis, the list huey.redis.extd_jobs (what KEDA scales on)
_RECORD, _BEAT, _LOCK = "job:", "beat:", "lock:"
# A lock left by a process that died holding it is broken after this long.
_LOCK_S = 10.0
# Uploads and job folders without a record (a process died creating them) older than this
# are removed.
_ORPHAN_S = 3600.0
# What a client is told to wait when the queue is full.
FULL_RETRY_AFTER_S = 30.0


@dataclass
class JobRecord:
    """What a job is and how far it got."""

    id: str
    suffix: str  # of the upload, and so of the result: the container is kept
    parameters: dict[str, Any]
    owner: str | None = None  # the API key that created it (its name), if keys are on
    state: State = "queued"
    frames_done: int = 0
    frames_total: int = 0
    error: str | None = None
    error_code: str | None = None  # a stable name for the error: video_too_long, ...
    attempts: int = 0  # runs started
    created: float = field(default_factory=time.time)
    updated: float = field(default_factory=time.time)
    expires: float | None = None  # once finished

    @property
    def progress(self) -> float:
        if self.state == "done":
            return 1.0
        return min(1.0, self.frames_done / self.frames_total) if self.frames_total else 0.0


@dataclass(frozen=True)
class JobLimits:
    max_queued: int
    max_attempts: int
    lease_s: float
    retention_s: float


def open_queue(url: str | None, folder: Path) -> Huey:
    """The task queue: Redis at ``url``, else SQLite in ``folder`` (one machine)."""
    if url:
        return RedisHuey(QUEUE_NAME, url=url, results=False, blocking=True, read_timeout=1)
    folder.mkdir(parents=True, exist_ok=True)
    return SqliteHuey(QUEUE_NAME, filename=str(folder / "queue.db"), results=False)


class JobStore:
    """Create, read, cancel and expire jobs; take, report and end them (for the runner)."""

    def __init__(self, queue: Huey, folder: Path, limits: JobLimits) -> None:
        self.queue = queue
        self.storage = queue.storage
        self.folder = folder
        self.limits = limits
        folder.mkdir(parents=True, exist_ok=True)
        # What runs a job in this process (its runner); None in an API-only process.
        self.executor: Callable[[str, int], None] | None = None
        self._task = queue.task(name="anonymize_video")(self._execute)

    def _execute(self, job_id: str, attempt: int) -> None:
        if self.executor is None:
            raise RuntimeError("this process runs no video jobs")
        self.executor(job_id, attempt)

    # Files.

    def upload(self, record: JobRecord) -> Path:
        return self.folder / record.id / f"input{record.suffix}"

    def result(self, record: JobRecord) -> Path:
        return self.folder / record.id / f"result{record.suffix}"

    def clear_scratch(self, record: JobRecord) -> None:
        """Remove what an interrupted run left in the job's folder (half-written results)."""
        for scratch in (self.folder / record.id).glob(".*.tmp"):
            scratch.unlink(missing_ok=True)

    # Records.

    def _read(self, key: str) -> dict[str, Any] | None:
        value = self.storage.peek_data(key)
        return None if value is EmptyData else json.loads(value)

    def _write(self, key: str, value: dict[str, Any]) -> None:
        self.storage.put_data(key, json.dumps(value).encode())

    def get(self, job_id: str) -> JobRecord | None:
        """The job as it stands: its record, with the running worker's progress."""
        if not (job_id.isascii() and job_id.isalnum()):
            return None
        record = self._read(_RECORD + job_id)
        if record is None:
            return None
        job = JobRecord(**record)
        beat = self._read(_BEAT + job_id) if job.state == "running" else None
        if beat and beat["attempt"] == job.attempts:
            job.frames_done, job.frames_total = beat["frames_done"], beat["frames_total"]
        return job

    def _save(self, record: JobRecord) -> None:
        record.updated = time.time()
        self._write(_RECORD + record.id, asdict(record))

    def records(self) -> list[JobRecord]:
        """Every job, oldest first."""
        found = [
            JobRecord(**json.loads(value))
            for key, value in self.storage.result_items().items()
            if key.startswith(_RECORD)
        ]
        return sorted(found, key=lambda record: record.created)

    @contextlib.contextmanager
    def _locked(self, name: str) -> Iterator[None]:
        """Hold the store-wide lock ``name`` (waiting for it); a lock whose holder died is
        broken after ``_LOCK_S``."""
        key = _LOCK + name
        while not self.storage.put_if_empty(key, str(time.time() + _LOCK_S).encode()):
            held_until = self.storage.peek_data(key)
            if held_until is not EmptyData and float(held_until) < time.time():
                log.warning("breaking the lock %s: its holder stopped", name)
                self.storage.delete_data(key)
            else:
                time.sleep(0.005)
        try:
            yield
        finally:
            self.storage.delete_data(key)

    def _locked_record(self, job_id: str) -> contextlib.AbstractContextManager[None]:
        return self._locked(_RECORD + job_id)

    def _enqueue(self, record: JobRecord) -> None:
        self._task(record.id, record.attempts + 1)

    def create(
        self, upload: Path, suffix: str, parameters: dict[str, Any], owner: str | None
    ) -> JobRecord:
        """A queued job over ``upload`` (moved into the job's folder); :class:`TooManyJobs`
        when ``max_queued`` jobs already wait."""
        record = JobRecord(uuid.uuid4().hex, suffix, parameters, owner)
        with self._locked("admission"):
            waiting = sum(job.state == "queued" for job in self.records())
            if waiting >= self.limits.max_queued:
                raise errors.TooManyJobs(
                    f"{waiting} video jobs are waiting, the most this service queues: try "
                    "again later",
                    limit=self.limits.max_queued,
                    retry_after_s=FULL_RETRY_AFTER_S,
                )
            staging = self.folder / f".{record.id}"
            staging.mkdir()
            shutil.move(upload, staging / f"input{suffix}")
            staging.rename(self.folder / record.id)  # whole, or not at all
            self._save(record)
        self._enqueue(record)
        return record

    def cancel(self, job_id: str) -> None:
        """Cancel a queued or running job (its worker stops at its next frames), or remove
        a finished one with its files."""
        with self._locked_record(job_id):
            record = self.get(job_id)
            if record is None:
                return
            if record.state in FINISHED:
                self._remove(record)
                return
            if record.state == "queued":
                self.upload(record).unlink(missing_ok=True)
            self._end(record, "cancelled")

    def _end(
        self, record: JobRecord, state: State, error: str | None = None, code: str | None = None
    ) -> None:
        record.state, record.error, record.error_code = state, error, code
        record.expires = time.time() + self.limits.retention_s
        self._save(record)
        self.storage.delete_data(_BEAT + record.id)

    def _remove(self, record: JobRecord) -> None:
        shutil.rmtree(self.folder / record.id, ignore_errors=True)
        for prefix in (_RECORD, _BEAT):
            self.storage.delete_data(prefix + record.id)

    # The runner's side.

    def take(self, job_id: str, attempt: int) -> JobRecord | None:
        """Start the ``attempt``-th run of a queued job; None when the message is stale (the
        job was cancelled, or another worker has it)."""
        with self._locked_record(job_id):
            record = self.get(job_id)
            if record is None or record.state != "queued" or record.attempts + 1 != attempt:
                return None
            record.state, record.attempts, record.frames_done = "running", attempt, 0
            self._save(record)
            self.beat(record)
        self.clear_scratch(record)
        return record

    def beat(self, record: JobRecord) -> bool:
        """Report the run's progress; False when the job is no longer this run's (cancelled,
        or given to another worker after a missed lease)."""
        current = self._read(_RECORD + record.id)
        if (
            current is None
            or current["state"] != "running"
            or current["attempts"] != record.attempts
        ):
            return False
        beat = {
            "attempt": record.attempts,
            "frames_done": record.frames_done,
            "frames_total": record.frames_total,
            "at": time.time(),
        }
        self._write(_BEAT + record.id, beat)
        return True

    def finish(
        self, record: JobRecord, state: State, error: str | None = None, code: str | None = None
    ) -> bool:
        """End this run's job as ``state`` (with an error and its code when it failed);
        False if it was no longer this run's."""
        with self._locked_record(record.id):
            current = self.get(record.id)
            if current is None or (current.state, current.attempts) != (
                "running",
                record.attempts,
            ):
                return False
            current.frames_done = record.frames_done
            self._end(current, state, error, code)
        self.clear_scratch(record)
        return True

    def release(self, record: JobRecord) -> None:
        """Queue again a job this process stops running (a shutdown): its run is not counted."""
        with self._locked_record(record.id):
            current = self.get(record.id)
            if current is None or (current.state, current.attempts) != (
                "running",
                record.attempts,
            ):
                return
            current.state, current.attempts = "queued", current.attempts - 1
            self._save(current)
        self.clear_scratch(record)
        self._enqueue(current)

    # Upkeep, by any process.

    def maintain(self) -> int:
        """Queue again (or fail) the jobs whose worker stopped reporting, send again the
        messages of queued jobs that lost theirs (a process died between the two writes),
        remove expired jobs and orphaned files; returns the number of jobs waiting."""
        now, records = time.time(), self.records()
        pending = {tuple(task.args) for task in self.queue.pending()}
        for record in records:
            if record.state == "running":
                beat = self._read(_BEAT + record.id)
                last = beat["at"] if beat and beat["attempt"] == record.attempts else record.updated
                if last < now - self.limits.lease_s:
                    self._reap(record.id)
            elif record.state == "queued":
                if record.updated < now - self.limits.lease_s and (
                    (record.id, record.attempts + 1) not in pending
                ):
                    log.warning("job %s had lost its message: sent again", record.id)
                    self._enqueue(record)
            elif record.expires and record.expires < now:
                with self._locked_record(record.id):
                    self._remove(record)
                log.info("removed job %s after the retention time", record.id)
        self._sweep(now, {record.id for record in records})
        return sum(record.state == "queued" for record in self.records())

    def _reap(self, job_id: str) -> None:
        with self._locked_record(job_id):
            record = self.get(job_id)
            if record is None or record.state != "running":
                return
            if record.attempts >= self.limits.max_attempts:
                log.warning("job %s failed: its worker stopped %d times", job_id, record.attempts)
                self._end(
                    record,
                    "failed",
                    f"the worker running it stopped {record.attempts} times (killed or out of "
                    "memory); it is not tried again",
                    "worker_lost",
                )
                return
            log.warning("job %s: its worker stopped reporting; queued again", job_id)
            record.state = "queued"
            self._save(record)
        self._enqueue(record)

    def _sweep(self, now: float, known: set[str]) -> None:
        for path in self.folder.iterdir():
            if path.name.lstrip(".") in known or path.name.startswith("queue.db"):
                continue
            with contextlib.suppress(OSError):
                if path.stat().st_mtime < now - _ORPHAN_S:
                    shutil.rmtree(path) if path.is_dir() else path.unlink()
