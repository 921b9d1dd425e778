"""Video jobs across processes on a real Redis: API replicas with no workers, `python -m
service worker` processes, a worker killed under its job, the queue's bound."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import samples
from helpers import assert_problem
from live_server import TEST_SETTINGS, start_server, wait_until, weights_folder

from tools import redis_server
from tools.launcher import RunningServer, launch_worker

av = pytest.importorskip("av", reason="needs the video extra: pip install 'extd-face[video]'")
pytestmark = pytest.mark.slow


@pytest.fixture
def cluster(tmp_path, weights_mirror) -> Iterator[dict[str, str]]:
    """Settings every process of one deployment shares: Redis, a jobs folder, the weights."""
    if not redis_server.available():
        pytest.skip("needs redis-server: apt-get install redis-server")
    weights = weights_folder(tmp_path, weights_mirror, ["extd-32"])
    with redis_server.redis_server(tmp_path / "redis") as url:
        yield {
            "EXTD_QUEUE_URL": url,
            "EXTD_JOBS_DIR": str(tmp_path / "jobs"),
            "EXTD_WEIGHTS_DIR": str(weights),
            "EXTD_WATCH_WEIGHTS": "false",
            "EXTD_JOB_LEASE_S": "3",
        }


class Processes:
    """Start processes of a deployment; all are stopped at the end of the test."""

    def __init__(self, folder: Path, settings: dict[str, str]) -> None:
        self.folder, self.settings, self.running = folder, settings, []

    def api(self, name: str, **env: str) -> RunningServer:
        env = {"EXTD_JOB_WORKERS": "0", **env}
        server = start_server(self.folder / name, self.settings | env)
        self.running.append(server)
        return server

    def worker(self, name: str, **env: str) -> RunningServer:
        worker = launch_worker(self.folder / name, TEST_SETTINGS | self.settings | env)
        self.running.append(worker)
        return worker

    def stop(self) -> None:
        for process in self.running:
            process.stop()


@pytest.fixture
def processes(tmp_path, cluster) -> Iterator[Processes]:
    started = Processes(tmp_path, cluster)
    yield started
    started.stop()


def post(server: RunningServer, clip: bytes) -> httpx.Response:
    return httpx.post(
        f"{server.url}/v1/jobs/anonymize", files={"video": ("clip.mp4", clip)}, timeout=60
    )


def state(server: RunningServer, job: str) -> dict:
    return httpx.get(f"{server.url}/v1/jobs/{job}", timeout=10).json()


def frames_in(data: bytes, folder: Path) -> int:
    (folder / "result.mp4").write_bytes(data)
    with av.open(str(folder / "result.mp4")) as video:
        return video.streams.video[0].frames


def test_a_job_posted_to_one_replica_is_followed_and_fetched_on_another(tmp_path, processes):
    a, b = processes.api("a"), processes.api("b")
    processes.worker("worker")
    clip = samples.video(tmp_path / "clip.mp4", frames=36, size=(320, 240)).read_bytes()
    created = post(a, clip)
    assert created.status_code == 202, created.text
    job = created.json()["id"]
    assert wait_until(lambda: state(b, job)["state"] == "done", 120), state(b, job)
    result = httpx.get(f"{b.url}/v1/jobs/{job}/result", timeout=60)
    assert result.status_code == 200
    assert frames_in(result.content, tmp_path) == 36
    assert httpx.delete(f"{b.url}/v1/jobs/{job}").status_code == 204
    assert_problem(httpx.get(f"{a.url}/v1/jobs/{job}"), 404, "job_not_found")


def test_a_worker_killed_under_its_job_leaves_it_to_another(tmp_path, processes, cluster):
    api = processes.api("api")
    first = processes.worker("first")
    clip = samples.video(tmp_path / "long.mp4", frames=240, size=(320, 240)).read_bytes()
    job = post(api, clip).json()["id"]
    assert wait_until(lambda: state(api, job)["frames_done"] > 0, 120), state(api, job)
    first.process.send_signal(signal.SIGKILL)
    first.process.wait()
    processes.worker("second")
    assert wait_until(lambda: state(api, job)["state"] == "done", 300), state(api, job)
    done = state(api, job)
    assert done["attempts"] == 2
    result = httpx.get(f"{api.url}/v1/jobs/{job}/result", timeout=60)
    assert frames_in(result.content, tmp_path) == 240
    assert list(Path(cluster["EXTD_JOBS_DIR"]).rglob("*.tmp")) == []


def running_attempt(api, job: str) -> int | None:
    """The attempt running the job once it has done a frame (a new attempt starts at 0)."""
    now = state(api, job)
    return now["attempts"] if now["state"] == "running" and now["frames_done"] > 0 else None


def test_a_job_whose_workers_keep_dying_fails_after_its_attempts(tmp_path, processes):
    api = processes.api("api", EXTD_JOB_MAX_ATTEMPTS="2")
    clip = samples.video(tmp_path / "long.mp4", frames=240, size=(320, 240)).read_bytes()
    job = post(api, clip).json()["id"]
    for attempt in (1, 2):
        worker = processes.worker(f"worker-{attempt}", EXTD_JOB_MAX_ATTEMPTS="2")
        assert wait_until(lambda n=attempt: running_attempt(api, job) == n, 120), state(api, job)
        worker.process.send_signal(signal.SIGKILL)
        worker.process.wait()
    processes.worker("last", EXTD_JOB_MAX_ATTEMPTS="2")
    assert wait_until(lambda: state(api, job)["state"] == "failed", 60), state(api, job)
    failed = state(api, job)
    assert (failed["error_code"], failed["attempts"]) == ("worker_lost", 2)


def test_with_no_worker_the_queue_is_bounded(tmp_path, processes):
    api = processes.api("api", EXTD_MAX_QUEUED_JOBS="2")
    clip = samples.video(tmp_path / "clip.mp4", frames=4).read_bytes()
    assert [post(api, clip).status_code for _ in range(2)] == [202, 202]
    refused = post(api, clip)
    assert_problem(refused, 429, "too_many_jobs")
    assert int(refused.headers["retry-after"]) >= 1
    assert [p.name for p in (tmp_path / "jobs").iterdir() if p.name.startswith(".")] == []
