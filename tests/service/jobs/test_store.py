"""The job store on both of its backends: SQLite (embedded) and a real Redis server.

Each test sees the store as two processes would: two stores over one queue
and one folder, each with its own connection.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from service import errors
from service.jobs.store import JobLimits, JobStore, open_queue

LIMITS = JobLimits(max_queued=3, max_attempts=2, lease_s=30, retention_s=3600)


def stores(folder: Path, url: str | None, limits: JobLimits = LIMITS) -> tuple[JobStore, JobStore]:
    """Two views of one queue and one jobs folder, as two processes have them."""
    return tuple(JobStore(open_queue(url, folder), folder, limits) for _ in range(2))


def new_job(store: JobStore, tmp_path: Path, owner: str | None = None):
    upload = tmp_path / f"upload-{time.monotonic_ns()}.mp4"
    upload.write_bytes(b"video bytes")
    return store.create(upload, ".mp4", {"model": "x"}, owner)


def pending(store: JobStore) -> list[tuple]:
    return [tuple(task.args) for task in store.queue.pending()]


def test_a_job_created_by_one_process_is_seen_whole_by_another(queue_url, tmp_path):
    api, other = stores(tmp_path / "jobs", queue_url)
    record = new_job(api, tmp_path, owner="key-a")
    seen = other.get(record.id)
    assert (seen.state, seen.owner, seen.attempts) == ("queued", "key-a", 0)
    assert other.upload(seen).read_bytes() == b"video bytes"
    assert [job.id for job in other.records()] == [record.id]
    assert pending(other) == [(record.id, 1)]
    assert not [p for p in api.folder.iterdir() if p.name.startswith(".")]  # no staging left
    assert other.get("../etc") is None
    assert other.get("0" * 32) is None


def test_the_queue_is_bounded(queue_url, tmp_path):
    api, worker = stores(tmp_path / "jobs", queue_url)
    first = new_job(api, tmp_path)
    for _ in range(2):
        new_job(api, tmp_path)
    with pytest.raises(errors.TooManyJobs) as refused:
        new_job(api, tmp_path)
    assert refused.value.retry_after_s > 0
    assert refused.value.limit == 3
    assert worker.take(first.id, 1) is not None  # running jobs do not count
    new_job(api, tmp_path)


def test_a_message_starts_one_run_of_one_worker(queue_url, tmp_path):
    api, worker = stores(tmp_path / "jobs", queue_url)
    record = new_job(api, tmp_path)
    assert worker.take(record.id, 2) is None  # not the attempt it waits for
    running = worker.take(record.id, 1)
    assert (running.state, running.attempts) == ("running", 1)
    assert api.take(record.id, 1) is None  # the same message twice: the second is stale
    assert api.get(record.id).state == "running"


def test_progress_is_reported_and_a_cancel_stops_the_run(queue_url, tmp_path):
    api, worker = stores(tmp_path / "jobs", queue_url)
    running = worker.take(new_job(api, tmp_path).id, 1)
    running.frames_done, running.frames_total = 5, 20
    assert worker.beat(running)
    seen = api.get(running.id)
    assert (seen.frames_done, seen.frames_total, seen.progress) == (5, 20, 0.25)
    api.cancel(running.id)
    assert api.get(running.id).state == "cancelled"
    assert not worker.beat(running)  # the run learns it is over
    assert not worker.finish(running, "done")
    assert api.get(running.id).state == "cancelled"


def test_cancelling_a_queued_job_and_removing_a_finished_one(queue_url, tmp_path):
    api, worker = stores(tmp_path / "jobs", queue_url)
    queued = new_job(api, tmp_path)
    api.cancel(queued.id)
    cancelled = api.get(queued.id)
    assert (cancelled.state, cancelled.expires is not None) == ("cancelled", True)
    assert not api.upload(queued).exists()
    assert worker.take(queued.id, 1) is None
    api.cancel(queued.id)  # a finished job: removed, files and all
    assert api.get(queued.id) is None
    assert not (api.folder / queued.id).exists()


def test_a_run_ends_once_and_its_scratch_goes_with_it(queue_url, tmp_path):
    api, worker = stores(tmp_path / "jobs", queue_url)
    running = worker.take(new_job(api, tmp_path).id, 1)
    scratch = worker.folder / running.id / ".result.mp4.abc.tmp"
    scratch.write_bytes(b"half a video")
    assert worker.finish(running, "failed", "the video lasts too long", "video_too_long")
    ended = api.get(running.id)
    assert (ended.state, ended.error_code) == ("failed", "video_too_long")
    assert not scratch.exists()
    assert not worker.finish(running, "done")


def test_a_stopping_worker_gives_its_job_back_uncounted(queue_url, tmp_path):
    api, worker = stores(tmp_path / "jobs", queue_url)
    record = new_job(api, tmp_path)
    worker.queue.dequeue()  # the message the worker took
    running = worker.take(record.id, 1)
    worker.release(running)
    back = api.get(record.id)
    assert (back.state, back.attempts) == ("queued", 0)
    assert pending(api) == [(record.id, 1)]


def test_a_job_whose_worker_died_runs_again_then_fails(queue_url, tmp_path):
    limits = JobLimits(max_queued=3, max_attempts=2, lease_s=0.2, retention_s=3600)
    api, worker = stores(tmp_path / "jobs", queue_url, limits)
    record = new_job(api, tmp_path)
    worker.queue.dequeue()
    first = worker.take(record.id, 1)
    scratch = worker.folder / record.id / ".result.mp4.abc.tmp"
    scratch.write_bytes(b"what the killed run left")
    time.sleep(0.4)  # no heartbeat: the worker was killed
    assert api.maintain() == 1
    again = api.get(record.id)
    assert (again.state, again.attempts) == ("queued", 1)
    assert pending(api) == [(record.id, 2)]
    worker.queue.dequeue()
    second = worker.take(record.id, 2)
    assert not scratch.exists()  # a new run starts clean
    assert not worker.finish(first, "done")  # the first run is not this job's any more
    time.sleep(0.4)
    api.maintain()
    failed = api.get(record.id)
    assert (failed.state, failed.error_code, failed.attempts) == ("failed", "worker_lost", 2)
    assert not worker.beat(second)


def test_a_queued_job_that_lost_its_message_gets_it_again(queue_url, tmp_path):
    limits = JobLimits(max_queued=3, max_attempts=2, lease_s=0.2, retention_s=3600)
    api, worker = stores(tmp_path / "jobs", queue_url, limits)
    record = new_job(api, tmp_path)
    worker.queue.dequeue()  # taken from the queue by a worker that died before starting it
    api.maintain()
    assert pending(api) == []  # not yet: the lease has not passed
    time.sleep(0.3)
    api.maintain()
    assert pending(api) == [(record.id, 1)]


def test_finished_jobs_expire_and_orphans_are_swept(queue_url, tmp_path):
    limits = JobLimits(max_queued=3, max_attempts=2, lease_s=30, retention_s=0.1)
    api, worker = stores(tmp_path / "jobs", queue_url, limits)
    done = worker.take(new_job(api, tmp_path).id, 1)
    worker.finish(done, "done")
    waiting = new_job(api, tmp_path)
    old = time.time() - 7200
    orphans = [api.folder / ".upload-abandoned", api.folder / "0123abcd"]
    orphans[0].write_bytes(b"half an upload")
    orphans[1].mkdir()
    fresh = api.folder / ".upload-in-progress"
    fresh.write_bytes(b"an upload being received")
    for orphan in orphans:
        os.utime(orphan, (old, old))
    time.sleep(0.2)
    assert api.maintain() == 1
    assert api.get(done.id) is None
    assert not (api.folder / done.id).exists()
    assert api.get(waiting.id).state == "queued"
    assert not any(orphan.exists() for orphan in orphans)
    assert fresh.exists()
