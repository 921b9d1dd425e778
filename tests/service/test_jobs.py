"""The job store (claims, atomic creation, retention) and a job across a restart of the server."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import samples
from live_server import start_server, wait_until
from metrics_text import sample

from service.jobs import JobRunner, JobStore
from service.metrics import Metrics

av = pytest.importorskip("av", reason="needs the video extra: pip install 'extd-face[video]'")

HOLD_A_CLAIM = """
import sys, time
from pathlib import Path
from service.jobs import JobStore
store = JobStore(Path(sys.argv[1]))
with store.claim(store.get(sys.argv[2])) as claimed:
    print(claimed, flush=True)
    time.sleep(60)
"""


def new_job(store: JobStore, tmp_path: Path) -> str:
    upload = tmp_path / "upload.mp4"
    upload.write_bytes(b"video bytes")
    return store.create(upload, ".mp4", {"model": "x"}, None).id


def test_a_job_is_created_whole_and_claimed_by_one_process(tmp_path):
    store = JobStore(tmp_path / "jobs")
    job_id = new_job(store, tmp_path)
    assert [p.name for p in store.folder.iterdir()] == [job_id]  # no staging left
    assert store.upload(store.get(job_id)).read_bytes() == b"video bytes"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_A_CLAIM, str(store.folder), job_id],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
    )
    try:
        assert holder.stdout.readline().strip() == "True"
        with store.claim(store.get(job_id)) as claimed:
            assert not claimed  # another process runs it
    finally:
        holder.kill()
        holder.wait()
    with store.claim(store.get(job_id)) as claimed:
        assert claimed  # its process is gone, and its claim with it


def test_finished_jobs_and_leftovers_expire(tmp_path):
    store = JobStore(tmp_path / "jobs")
    old = store.get(new_job(store, tmp_path))
    old.state = "done"
    store.save(old)
    fresh = store.get(new_job(store, tmp_path))
    stale = store.folder / ".upload-abandoned"
    stale.write_bytes(b"half an upload")
    os.utime(stale, (time.time() - 7200, time.time() - 7200))
    runner = JobRunner(
        store, registry=None, metrics=Metrics(), retention_s=0.01, photos_waiting=lambda: False
    )
    time.sleep(0.05)
    runner._expire()
    assert store.get(old.id) is None
    assert store.get(fresh.id) is not None  # queued: kept
    assert not stale.exists()


@pytest.mark.slow
def test_a_job_survives_a_restart(tmp_path, weights_mirror):
    """Stopped in the middle of a job, the server queues it again; started again, it finishes
    it; the result is kept across the next restart too."""
    from live_server import weights_folder

    weights_folder(tmp_path, weights_mirror, ["extd-32"])
    env = {"EXTD_WATCH_WEIGHTS": "false", "EXTD_JOBS_DIR": str(tmp_path / "jobs")}
    clip = samples.video(tmp_path / "long.mp4", frames=240, size=(320, 240)).read_bytes()
    server = start_server(tmp_path, env)
    try:
        created = httpx.post(
            f"{server.url}/v1/jobs/anonymize", files={"video": ("long.mp4", clip)}, timeout=60
        )
        assert created.status_code == 202, created.text
        job = created.json()["id"]
        status = f"{server.url}/v1/jobs/{job}"
        assert wait_until(lambda: httpx.get(status).json()["frames_done"] > 0)
    finally:
        assert server.stop() == 0
    assert '"state": "queued"' in (tmp_path / "jobs" / job / "job.json").read_text()
    for attempt in range(2):
        server = start_server(tmp_path, env)
        try:
            status = f"{server.url}/v1/jobs/{job}"
            done = lambda url=status: httpx.get(url).json()["state"] == "done"  # noqa: E731
            assert wait_until(done, 300)
            answer = httpx.get(f"{status}/result", timeout=60)
            assert answer.status_code == 200
            (tmp_path / f"out-{attempt}.mp4").write_bytes(answer.content)
            with av.open(str(tmp_path / f"out-{attempt}.mp4")) as video:
                assert video.streams.video[0].frames == 240
            if attempt == 0:  # it ran here, to its end
                finished = sample(httpx.get(f"{server.url}/metrics").text, "extd_jobs_total")
                assert finished == 1
        finally:
            assert server.stop() == 0
    shutil.rmtree(tmp_path / "jobs")
