"""The job runner of an API process (the embedded default): a job survives a restart."""

from __future__ import annotations

import shutil

import httpx
import pytest
import samples
from live_server import start_server, wait_until, weights_folder
from metrics_text import sample

from service.jobs.store import JobLimits, JobStore, open_queue

av = pytest.importorskip("av", reason="needs the video extra: pip install 'extd-face[video]'")


@pytest.mark.slow
def test_a_job_survives_a_restart(tmp_path, weights_mirror):
    """Stopped in the middle of a job, the server queues it again, its run not counted;
    started again, it finishes it; the result is kept across the next restart too."""
    weights_folder(tmp_path, weights_mirror, ["extd-32"])
    jobs = tmp_path / "jobs"
    env = {"EXTD_WATCH_WEIGHTS": "false", "EXTD_JOBS_DIR": str(jobs)}
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
    limits = JobLimits(max_queued=1, max_attempts=1, lease_s=30, retention_s=60)
    stopped = JobStore(open_queue(None, jobs), jobs, limits).get(job)
    assert (stopped.state, stopped.attempts) == ("queued", 0)
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
                assert httpx.get(status).json()["attempts"] == 1
        finally:
            assert server.stop() == 0
    assert list(jobs.rglob("*.tmp")) == []
    shutil.rmtree(jobs)
