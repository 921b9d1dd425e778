"""Dynamic batching under concurrency, overload, deadlines, disconnects and shutdown."""

from __future__ import annotations

import asyncio
import math
import socket
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import urlparse

import httpx
import numpy as np
import pytest
from helpers import assert_same_faces
from live_server import start_server, weights_folder
from metrics_text import sample

from model.detector import Detector
from model.eval.split import load_split
from model.options import SERVING, ScalePolicy
from service import errors
from service.batching import PHOTO_GRACE_S, Batcher, Ticket
from service.metrics import Metrics
from service.registry import LoadedModel


def form(data: bytes) -> dict:
    return {"files": [("images", ("image.jpg", data, "image/jpeg"))]}


async def post_all(url: str, payloads: list[bytes], params: dict) -> list[httpx.Response]:
    """POST every payload at once."""
    async with httpx.AsyncClient(base_url=url, timeout=300) as http:
        return await asyncio.gather(
            *(http.post("/v1/detect", params=params, **form(data)) for data in payloads)
        )


@pytest.fixture(scope="module")
def many_images(dev_split) -> list[bytes]:
    split = load_split(dev_split).subset(32)
    return [split.image_path(name).read_bytes() for name in split.images]


def detect_alone(detector: Detector, data: bytes, policy: ScalePolicy) -> np.ndarray:
    """One image through the detector on the service's input path (a JPEG decoded at the
    smallest DCT scale that still covers its network size)."""
    (faces,) = detector.run([detector.load(data, policy)], [SERVING])
    return faces


@pytest.mark.slow
def test_concurrent_requests_get_their_own_faces_in_batches(
    server, many_images, reference_detectors
):
    params = {"max_side": 320, "model": "extd-64"}
    before = httpx.get(f"{server.url}/metrics").text
    responses = asyncio.run(post_all(server.url, many_images, params))
    after = httpx.get(f"{server.url}/metrics").text
    detector = reference_detectors["extd-64"]
    for data, response in zip(many_images, responses, strict=True):
        assert response.status_code == 200, response.text
        found = np.array(
            [[*f["box"], f["score"]] for f in response.json()["results"][0]["faces"]],
            dtype=np.float32,
        ).reshape(-1, 5)
        alone = detect_alone(detector, data, ScalePolicy(max_side=320))
        assert_same_faces(found, alone, min_score=0.5)
    batches = sample(after, "extd_batch_size_count", model="extd-64") - sample(
        before, "extd_batch_size_count", model="extd-64"
    )
    singles = sample(after, "extd_batch_size_bucket", model="extd-64", le="1.0") - sample(
        before, "extd_batch_size_bucket", model="extd-64", le="1.0"
    )
    images = sample(after, "extd_batch_size_sum", model="extd-64") - sample(
        before, "extd_batch_size_sum", model="extd-64"
    )
    assert images == 32
    assert batches < 32, "no forward pass took more than one image"
    assert singles < batches


@pytest.fixture(scope="module")
def small_queue_server(tmp_path_factory, weights_mirror):
    folder = tmp_path_factory.mktemp("small-queue")
    weights_folder(folder, weights_mirror, ["extd-64"])
    env = {"EXTD_QUEUE_SIZE": "3", "EXTD_MAX_BATCH_SIZE": "1", "EXTD_WATCH_WEIGHTS": "false"}
    # Room for one image three times the size, to keep the worker busy for seconds.
    env |= {"EXTD_MAX_INPUT_PIXELS": "8000000", "EXTD_MAX_BATCH_PIXELS": "8000000"}
    running = start_server(folder, env)
    yield running
    running.stop()


@pytest.mark.slow
def test_overload_gets_fast_429s_and_loses_nothing(small_queue_server, dev_images):
    url = small_queue_server.url
    payload = dev_images[3].read_bytes()
    before = httpx.get(f"{url}/metrics").text
    livez: list[int] = []

    def probe_liveness() -> None:
        time.sleep(0.5)  # while the worker is busy with the accepted images
        livez.append(httpx.get(f"{url}/livez", timeout=60).status_code)

    prober = threading.Thread(target=probe_liveness)
    prober.start()
    results = asyncio.run(post_all(url, [payload] * 24, {}))
    prober.join()
    statuses = [r.status_code for r in results]
    assert set(statuses) == {200, 429}
    assert statuses.count(200) >= 3
    assert statuses.count(429) >= 10
    rejected = [r for r in results if r.status_code == 429]
    assert all(int(r.headers["retry-after"]) >= 1 for r in rejected)
    assert all(r.json()["code"] == "queue_full" for r in rejected)
    assert livez == [200]
    # Refused images never reach the model: it ran exactly the accepted ones ...
    after = httpx.get(f"{url}/metrics").text
    for name, labels, expected in (
        ("extd_rejected_total", {"reason": "queue_full"}, statuses.count(429)),
        ("extd_images_total", {}, statuses.count(200)),
        # ... and were never decoded: queue room is reserved before decoding.
        ("extd_preprocess_duration_seconds_count", {}, statuses.count(200)),
    ):
        assert sample(after, name, **labels) - sample(before, name, **labels) == expected, name


@pytest.mark.slow
def test_expired_and_abandoned_work_never_reaches_the_model(small_queue_server, dev_images):
    url = small_queue_server.url
    slow = dev_images[3].read_bytes()
    before = httpx.get(f"{url}/metrics").text

    async def scenario() -> tuple[int, int]:
        async with httpx.AsyncClient(base_url=url, timeout=120) as http:
            # Three times the size keeps the worker busy for seconds on any backend.
            busy = asyncio.create_task(http.post("/v1/detect", params={"scale": 3}, **form(slow)))
            await asyncio.sleep(0.3)
            late = await http.post("/v1/detect", params={"timeout_ms": 200}, **form(slow))
            abandon_request(url, slow)
            return (await busy).status_code, late.status_code

    busy_status, late_status = asyncio.run(scenario())
    assert busy_status == 200
    # Refused at once when the speed is known (the work ahead leaves it no time), else
    # dropped from the queue once its deadline passed.
    assert late_status in (429, 504)
    late_reason, counter = (
        ("queue_full", "extd_rejected_total") if late_status == 429 else
        ("deadline", "extd_cancelled_total")
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        after = httpx.get(f"{url}/metrics").text
        dropped = sample(after, "extd_cancelled_total", reason="disconnected") - sample(
            before, "extd_cancelled_total", reason="disconnected"
        )
        if dropped >= 1:
            break
        time.sleep(0.2)
    assert sample(after, counter, reason=late_reason) > sample(before, counter, reason=late_reason)
    assert dropped >= 1
    # Neither the expired nor the abandoned image was run.
    assert sample(after, "extd_images_total") - sample(before, "extd_images_total") == 1


def abandon_request(url: str, data: bytes) -> None:
    """Send a whole multipart request on a raw socket and hang up before the answer."""
    parsed = urlparse(url)
    boundary = "extd-test-boundary"
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="images"; filename="a.jpg"\r\n'
            "Content-Type: image/jpeg\r\n\r\n"
        ).encode()
        + data
        + f"\r\n--{boundary}--\r\n".encode()
    )
    head = (
        f"POST /v1/detect HTTP/1.1\r\nHost: {parsed.netloc}\r\nContent-Length: {len(body)}\r\n"
        f"Content-Type: multipart/form-data; boundary={boundary}\r\n\r\n"
    ).encode()
    with socket.create_connection((parsed.hostname, parsed.port)) as connection:
        connection.sendall(head + body)
        time.sleep(0.3)


@pytest.mark.slow
def test_graceful_shutdown_finishes_queued_work(tmp_path, weights_mirror, dev_images):
    weights_folder(tmp_path, weights_mirror, ["extd-32"])
    server = start_server(tmp_path, {"EXTD_MAX_BATCH_SIZE": "1", "EXTD_WATCH_WEIGHTS": "false"})
    payload = dev_images[2].read_bytes()

    async def scenario() -> list[int]:
        async with httpx.AsyncClient(base_url=server.url, timeout=120) as http:
            tasks = [
                asyncio.create_task(http.post("/v1/detect", **form(payload))) for _ in range(4)
            ]
            await asyncio.sleep(0.5)
            stopper = asyncio.create_task(asyncio.to_thread(server.stop))
            responses = await asyncio.gather(*tasks)
            await stopper
            return [r.status_code for r in responses]

    assert asyncio.run(scenario()) == [200, 200, 200, 200]
    # uvicorn shuts down gracefully, then re-raises SIGTERM as its exit status.
    assert server.process.returncode in (0, -15)
    assert "Waiting for application shutdown" in server.log()
    assert "stopped" in server.log()


def make_batcher(capacity: int = 64) -> Batcher:
    return Batcher(
        max_batch_size=4,
        max_batch_delay_s=0.001,
        capacity=capacity,
        metrics=Metrics(),
        steady_shapes=set,
        release_idle_s=10,
    )


def test_admission_refuses_what_the_work_ahead_leaves_no_time_for():
    """At the measured speed, work queued ahead that would push a request past its deadline
    is a 429 with the time it needs, not a 504 after waiting; an idle queue takes anything."""
    batcher = make_batcher()
    now = time.monotonic()
    with batcher.reserve(1, 10**6, now + 0.001):  # nothing measured, nothing ahead: taken
        pass
    batcher.seconds_per_pixel = 1e-6  # a megapixel a second
    with batcher.reserve(4, 4 * 10**6, now + 60):  # 4 s of work now ahead
        with batcher.reserve(1, 10**6, now + 10):  # 5 s in all: fits in 10
            pass
        with (
            pytest.raises(errors.QueueFull, match=r"about 4\.0 s") as refused,
            batcher.reserve(1, 10**6, now + 3),
        ):
            pass
        assert refused.value.retry_after_s == pytest.approx(4.0)
    with batcher.reserve(1, 10**6, now + 0.5):  # the work ahead is gone again
        pass


def test_the_queue_capacity_still_holds():
    batcher = make_batcher(capacity=2)
    deadline = time.monotonic() + 60
    with (
        batcher.reserve(2, 0, deadline),
        pytest.raises(errors.QueueFull),
        batcher.reserve(1, 0, deadline),
    ):
        pass


class StubDetector:
    """Stands in for the model where only the order of the work matters: each forward pass
    is logged, takes ``pass_s`` and finds no face."""

    def __init__(self, pass_s: float = 0.05) -> None:
        self.pass_s = pass_s
        self.passes: list[list[str]] = []
        self.started = threading.Event()

    def images_per_pass(self, shape: tuple[int, int]) -> int:
        return 1

    def run(self, items, options) -> list[np.ndarray]:
        self.passes.append([item.name for item in items])
        self.started.set()
        time.sleep(self.pass_s)
        return [np.zeros((0, 5), np.float32) for _ in items]

    def release_memory(self) -> None:
        pass


@dataclass
class StubItem:
    name: str
    input_shape: tuple[int, int] = (128, 128)

    @property
    def plan(self) -> SimpleNamespace:
        return SimpleNamespace(input_pixels=math.prod(self.input_shape))


def stub_model(detector: StubDetector) -> LoadedModel:
    return LoadedModel("stub", detector, Path("stub.safetensors"), 0, (0, 0))


def submit_photo(
    batcher: Batcher, model: LoadedModel, name: str, shape: tuple[int, int] = (128, 128)
) -> Future:
    item = StubItem(name, shape)
    with batcher.reserve(1, item.plan.input_pixels, time.monotonic() + 60) as room:
        (future,) = batcher.submit(room, model, [item], SERVING, Ticket(math.inf))
    return future


def test_photos_overtake_the_frames_of_a_job():
    """A photo waits for at most the forward pass of frames already running."""
    detector = StubDetector()
    batcher, model = make_batcher(), stub_model(detector)
    batcher.start()
    frames = [StubItem(f"frame-{n}") for n in range(6)]
    with ThreadPoolExecutor(1) as job:
        found = job.submit(batcher.run_background, model, frames, [SERVING] * 6)
        assert detector.started.wait(5)
        photo = submit_photo(batcher, model, "photo")
        assert len(photo.result(5)) == 0
        assert len(found.result(5)) == 6
    batcher.stop(5)
    order = [name for names in detector.passes for name in names]
    assert order.index("photo") == 1  # right after the frame that was running
    assert all(len(names) == 1 for names in detector.passes)  # one pass of frames at a time


def test_frames_wait_while_photos_are_decoded_and_just_after_one():
    detector = StubDetector(pass_s=0.001)
    batcher, model = make_batcher(), stub_model(detector)
    batcher.start()
    with ThreadPoolExecutor(1) as job:
        with batcher.reserve(1, 128 * 128, time.monotonic() + 60):  # a photo being decoded
            found = job.submit(batcher.run_background, model, [StubItem("frame")], [SERVING])
            time.sleep(0.3)
            assert detector.passes == []
        assert len(found.result(5)) == 1
        submit_photo(batcher, model, "photo").result(5)
        answered = time.monotonic()
        job.submit(batcher.run_background, model, [StubItem("next")], [SERVING]).result(5)
        assert time.monotonic() - answered >= PHOTO_GRACE_S * 0.9
    batcher.stop(5)


def test_stopping_refuses_waiting_frames():
    detector = StubDetector(pass_s=0.3)
    batcher, model = make_batcher(), stub_model(detector)
    batcher.start()
    with ThreadPoolExecutor(1) as job:
        found = job.submit(
            batcher.run_background, model, [StubItem("a"), StubItem("b")], [SERVING] * 2
        )
        assert detector.started.wait(5)
        batcher.stop(5)
        with pytest.raises(errors.ShuttingDown):
            found.result(5)
    with pytest.raises(errors.ShuttingDown):
        batcher.run_background(model, [StubItem("late")], [SERVING])


def test_the_speed_is_measured_on_inputs_large_enough_to_show_it():
    """A 1x1 photo's pass is all fixed cost: counted per pixel it made the next 1024x768
    photo wait minutes in the estimate (a 429 with Retry-After 172 on an idle service)."""
    detector = StubDetector(pass_s=0.01)
    batcher, model = make_batcher(), stub_model(detector)
    batcher.start()
    for shape in [(1, 1), (32, 32)]:
        submit_photo(batcher, model, "tiny", shape).result(5)
    assert batcher.seconds_per_pixel is None
    submit_photo(batcher, model, "photo").result(5)
    assert batcher.seconds_per_pixel == pytest.approx(0.01 / 128**2, rel=0.5)
    with batcher.reserve(1, 1024 * 768, time.monotonic() + 10):
        pass  # nothing ahead: taken
    batcher.stop(5)
