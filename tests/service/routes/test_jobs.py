"""Video jobs in process over random weights: create, watch, fetch, cancel, refuse."""

from __future__ import annotations

import time

import pytest
import samples
from helpers import assert_problem
from in_process import running_app, state_of

from service.dependencies import get_jobs
from service.jobs.store import JobLimits, JobStore, open_queue

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


@pytest.mark.slow
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
    limits = JobLimits(max_queued=5, max_attempts=3, lease_s=30, retention_s=60)
    idle = JobStore(open_queue(None, tmp_path / "idle"), tmp_path / "idle", limits)
    client.app.dependency_overrides[get_jobs] = lambda: idle
    try:
        job = post_video(client, clip).json()
        assert client.get(f"/v1/jobs/{job['id']}").json()["state"] == "queued"
        assert_problem(client.get(f"/v1/jobs/{job['id']}/result"), 409, "job_not_finished")
    finally:
        client.app.dependency_overrides.clear()


def leftovers(client) -> list[str]:
    """The jobs folder's files, but the embedded queue's."""
    folder = state_of(client).jobs.folder
    return sorted(p.name for p in folder.iterdir() if not p.name.startswith("queue.db"))


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
        assert leftovers(app) == []


def test_jobs_belong_to_their_api_key(random_weights, clip):
    with running_app(random_weights, api_keys="first,second") as app:
        first, second = {"X-API-Key": "first"}, {"X-API-Key": "second"}
        created = app.post("/v1/jobs/anonymize", headers=first, files={"video": ("clip.mp4", clip)})
        location = created.headers["location"]
        assert app.get(location, headers=first).status_code == 200
        assert_problem(app.get(location, headers=second), 404, "job_not_found")
        assert_problem(app.delete(location, headers=second), 404, "job_not_found")
        assert_problem(app.get(location), 401, "unauthorized")


@pytest.mark.slow
def test_a_running_job_can_be_cancelled(random_weights, tmp_path):
    long = samples.video(tmp_path / "long.mp4", frames=240, size=(320, 240)).read_bytes()
    with running_app(random_weights) as app:
        location = post_video(app, long).headers["location"]
        deadline = time.monotonic() + 60
        while app.get(location).json()["frames_done"] == 0:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert app.delete(location).status_code == 204
        assert app.get(location).json()["state"] == "cancelled"
        assert_problem(app.get(f"{location}/result"), 409, "job_not_finished")
        job_folder = state_of(app).jobs.folder / location.rsplit("/", 1)[-1]
        deadline = time.monotonic() + 30
        while any(job_folder.iterdir()):  # the runner stops at its next frames and cleans up
            assert time.monotonic() < deadline, list(job_folder.iterdir())
            time.sleep(0.05)
        assert 'extd_jobs_total{state="cancelled"} 1.0' in app.get("/metrics").text


def test_the_queue_is_bounded(random_weights, clip):
    with running_app(random_weights, job_workers=0, max_queued_jobs=2) as app:
        assert [post_video(app, clip).status_code for _ in range(2)] == [202, 202]
        refused = assert_problem(post_video(app, clip), 429, "too_many_jobs")
        assert refused["limit"] == 2
        assert int(post_video(app, clip).headers["retry-after"]) >= 1
        assert len([p for p in leftovers(app) if not p.startswith(".")]) == 2


def test_an_unreachable_queue_is_a_503(random_weights, clip):
    with running_app(random_weights, queue_url="redis://127.0.0.1:1/0") as app:
        assert_problem(app.get("/v1/jobs/" + "0" * 32), 503, "queue_unavailable")
        refused = post_video(app, clip)
        assert_problem(refused, 503, "queue_unavailable")
        assert refused.headers["retry-after"]
        assert leftovers(app) == []


@pytest.mark.parametrize(
    ("name", "payload"),
    [
        ("photo.mp4", samples.photo()),
        ("animation.mp4", samples.animation("GIF")),
        ("notes.mkv", b"not a video at all"),
    ],
)
def test_what_is_not_a_video_is_refused_whatever_its_name(client, name, payload):
    refused = assert_problem(post_video(client, payload, name=name), 415, "unsupported_video")
    folder = str(state_of(client).jobs.folder)
    assert folder not in refused["detail"]
    assert ".upload-" not in refused["detail"]


def test_frames_over_the_photo_pixel_limit_are_refused(random_weights, clip):
    with running_app(random_weights, max_image_pixels=160 * 120 - 1) as app:
        refused = assert_problem(post_video(app, clip), 413, "video_frame_too_large")
        assert refused["limit"] == 160 * 120 - 1
        assert leftovers(app) == []


@pytest.mark.slow
def test_a_video_longer_than_its_header_says_fails_while_decoding(random_weights, tmp_path):
    lying = samples.lying_duration_mp4(tmp_path / "lying.mp4", seconds=30).read_bytes()
    with running_app(random_weights, max_video_seconds=10) as app:
        created = post_video(app, lying)
        assert created.status_code == 202, created.text  # the header says 1 s
        failed = wait_done(app, created.headers["location"])
        assert (failed["state"], failed["error_code"]) == ("failed", "video_too_long")
        assert failed["frames_done"] <= 10 * 5


@pytest.mark.slow
def test_a_truncated_video_never_ends_done(client, tmp_path):
    half = samples.half_of_a_faststart_mp4(tmp_path / "half.mp4").read_bytes()
    created = post_video(client, half)
    if created.status_code != 202:  # refused at once when the probe sees it
        assert_problem(created, 415, "unsupported_video")
        return
    failed = wait_done(client, created.headers["location"])
    assert (failed["state"], failed["error_code"]) == ("failed", "unsupported_video")
    assert "truncated" in failed["error"]
