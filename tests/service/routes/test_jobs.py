"""Video jobs in process over random weights: create, watch, fetch, cancel, refuse."""

from __future__ import annotations

import time

import pytest
import samples
from helpers import assert_problem
from in_process import running_app, state_of

from service.dependencies import get_jobs
from service.jobs import JobStore

av = pytest.importorskip("av", reason="needs the video extra: pip install 'extd-face[video]'")


def post_video(client, payload: bytes, name: str = "clip.mp4", **params):
    return client.post("/v1/jobs/anonymize", params=params, files={"video": (name, payload)})


def wait_done(client, location: str, timeout_s: float = 120) -> dict:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        job = client.get(location).json()
        if job["state"] not in ("queued", "running"):
            return job
        time.sleep(0.1)
    raise AssertionError(f"job not finished: {job}")


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> bytes:
    return samples.video(tmp_path_factory.mktemp("clip") / "clip.mp4", frames=16).read_bytes()


def test_a_job_runs_and_its_video_keeps_frames_and_sound(client, clip, tmp_path):
    created = post_video(client, clip, method="solid", hold=1)
    assert created.status_code == 202, created.text
    job = created.json()
    assert created.headers["location"].endswith(f"/v1/jobs/{job['id']}")
    assert job["state"] in ("queued", "running")
    assert job["parameters"]["hiding"]["method"] == "solid"
    assert job["parameters"]["video"]["hold"] == 1
    done = wait_done(client, created.headers["location"])
    assert done["state"] == "done", done
    assert (done["progress"], done["frames_done"], done["frames_total"]) == (1.0, 16, 16)
    result = client.get(done["result"])
    assert result.status_code == 200
    assert result.headers["content-type"] == "video/mp4"
    (tmp_path / "out.mp4").write_bytes(result.content)
    with av.open(str(tmp_path / "out.mp4")) as video:
        assert video.streams.video[0].frames == 16
        assert len(video.streams.audio) == 1
    metrics = client.get("/metrics").text
    assert 'extd_jobs_total{state="done"}' in metrics


def test_deleting_a_job_removes_its_files(client, clip):
    job = post_video(client, clip).json()
    wait_done(client, f"/v1/jobs/{job['id']}")
    folder = state_of(client).jobs.folder / job["id"]
    assert folder.is_dir()
    assert client.delete(f"/v1/jobs/{job['id']}").status_code == 204
    assert not folder.exists()
    assert_problem(client.get(f"/v1/jobs/{job['id']}"), 404, "job_not_found")


def test_a_result_before_the_end_is_409(client, clip, tmp_path):
    """A store no runner works on (a dependency override) keeps its job queued."""
    idle = JobStore(tmp_path / "idle")
    client.app.dependency_overrides[get_jobs] = lambda: idle
    try:
        job = post_video(client, clip).json()
        assert client.get(f"/v1/jobs/{job['id']}").json()["state"] == "queued"
        assert_problem(client.get(f"/v1/jobs/{job['id']}/result"), 409, "job_not_finished")
    finally:
        client.app.dependency_overrides.clear()


def leftovers(client) -> list[str]:
    return sorted(p.name for p in state_of(client).jobs.folder.iterdir())


def test_bad_videos_are_refused_and_leave_nothing(client, clip):
    before = leftovers(client)
    assert_problem(post_video(client, b"not a video at all"), 415, "unsupported_video")
    truncated = clip[: len(clip) // 4]
    assert_problem(post_video(client, truncated), 415, "unsupported_video")
    assert_problem(post_video(client, clip, hold=99), 422, "invalid_parameters")
    assert_problem(post_video(client, clip, model="nope"), 404, "model_not_found")
    missing = client.post("/v1/jobs/anonymize", files={"image": ("a.mp4", clip)})
    assert_problem(missing, 422, "invalid_request")
    assert leftovers(client) == before


def test_video_limits(random_weights, clip):
    with running_app(random_weights, max_video_seconds=0.5, max_video_bytes=len(clip) * 2) as app:
        long = post_video(app, clip)
        assert assert_problem(long, 413, "video_too_long")["limit"] == 0
        huge = post_video(app, clip * 3)
        assert_problem(huge, 413, "body_too_large")
        assert sorted(p.name for p in state_of(app).jobs.folder.iterdir()) == []


def test_jobs_belong_to_their_api_key(random_weights, clip):
    with running_app(random_weights, api_keys="first,second") as app:
        first, second = {"X-API-Key": "first"}, {"X-API-Key": "second"}
        created = app.post("/v1/jobs/anonymize", headers=first, files={"video": ("clip.mp4", clip)})
        location = created.headers["location"]
        assert app.get(location, headers=first).status_code == 200
        assert_problem(app.get(location, headers=second), 404, "job_not_found")
        assert_problem(app.delete(location, headers=second), 404, "job_not_found")
        assert_problem(app.get(location), 401, "unauthorized")
