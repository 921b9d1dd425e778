"""The several-process layout (EXTD_HTTP_WORKERS=2): HTTP workers in front of one inference
process, answering as the single process does, replaced when killed, drained on SIGTERM."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from helpers import assert_problem, assert_same_faces
from live_server import start_server, wait_until, weights_folder
from metrics_text import sample

from model.options import SERVING, ScalePolicy
from tools.launcher import RunningServer

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def fleet(tmp_path_factory, weights_mirror) -> Iterator[RunningServer]:
    folder = tmp_path_factory.mktemp("fleet")
    weights_folder(folder, weights_mirror, ["extd-64"])
    env = {"EXTD_HTTP_WORKERS": "2", "EXTD_WATCH_WEIGHTS": "false", "EXTD_QUEUE_SIZE": "6"}
    running = start_server(folder, env)
    yield running
    running.stop()


def children(pid: int) -> list[int]:
    """The processes ``pid`` started (Linux)."""
    return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def form(data: bytes) -> dict:
    return {"files": [("images", ("image.jpg", data, "image/jpeg"))]}


async def post_all(url: str, payloads: list[bytes], params: dict) -> list[httpx.Response]:
    async with httpx.AsyncClient(base_url=url, timeout=300) as http:
        return await asyncio.gather(
            *(http.post("/v1/detect", params=params, **form(data)) for data in payloads)
        )


def test_every_answer_is_the_detectors(fleet, dev_images, reference_detectors):
    payloads = [path.read_bytes() for path in dev_images[:4]]
    before = httpx.get(f"{fleet.url}/metrics").text
    answers = asyncio.run(post_all(fleet.url, payloads, {"max_side": 640}))
    detector = reference_detectors["extd-64"]
    for data, answer in zip(payloads, answers, strict=True):
        assert answer.status_code == 200, answer.text
        found = np.array(
            [[*f["box"], f["score"]] for f in answer.json()["results"][0]["faces"]],
            dtype=np.float32,
        ).reshape(-1, 5)
        (alone,) = detector.run([detector.load(data, ScalePolicy(max_side=640))], [SERVING])
        assert_same_faces(found, alone, min_score=0.5)
    after = httpx.get(f"{fleet.url}/metrics").text
    # Any worker's /metrics counts the requests of both and the inference process's images.
    route = {"route": "/v1/detect", "status": "200"}
    assert sample(after, "extd_http_requests_total", **route) - sample(
        before, "extd_http_requests_total", **route
    ) == len(payloads)
    assert sample(after, "extd_images_total") - sample(before, "extd_images_total") == 4
    assert_problem(httpx.post(f"{fleet.url}/v1/detect", **form(b"junk")), 415, "unsupported_image")
    unknown = httpx.post(f"{fleet.url}/v1/detect", params={"model": "nope"}, **form(payloads[0]))
    assert_problem(unknown, 404, "model_not_found")
    assert httpx.get(f"{fleet.url}/v1/models").json()["models"][0]["name"] == "extd-64"


def test_a_full_queue_is_a_429_there_too(fleet, dev_images):
    answers = asyncio.run(post_all(fleet.url, [dev_images[3].read_bytes()] * 16, {"scale": 2}))
    statuses = [answer.status_code for answer in answers]
    assert set(statuses) == {200, 429}, statuses
    refused = next(answer for answer in answers if answer.status_code == 429)
    assert refused.json()["code"] == "queue_full"
    assert int(refused.headers["retry-after"]) >= 1


def http_workers(pid: int) -> list[int]:
    return [
        child
        for child in children(pid)
        if b"http" in Path(f"/proc/{child}/cmdline").read_bytes().split(b"\0")
    ]


def test_a_killed_http_worker_is_replaced(fleet, dev_images):
    assert len(children(fleet.process.pid)) == 3  # the inference process, two HTTP workers
    killed = http_workers(fleet.process.pid)[0]
    os.kill(killed, signal.SIGKILL)
    replaced = lambda: (  # noqa: E731
        len(http_workers(fleet.process.pid)) == 2 and killed not in children(fleet.process.pid)
    )
    assert wait_until(replaced, 60)
    payload = dev_images[0].read_bytes()
    deadline = time.monotonic() + 60
    while True:  # the new worker answers 503 until it has the inference process's status
        answers = asyncio.run(post_all(fleet.url, [payload] * 4, {}))
        statuses = [answer.status_code for answer in answers]
        if statuses == [200] * 4 or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert statuses == [200] * 4


def test_a_stop_drains_the_workers_first(tmp_path, weights_mirror, dev_images):
    weights_folder(tmp_path, weights_mirror, ["extd-32"])
    env = {"EXTD_HTTP_WORKERS": "2", "EXTD_WATCH_WEIGHTS": "false", "EXTD_MAX_BATCH_SIZE": "1"}
    server = start_server(tmp_path, env)
    payload = dev_images[2].read_bytes()

    async def scenario() -> list[int]:
        async with httpx.AsyncClient(base_url=server.url, timeout=120) as http:
            sent = [asyncio.create_task(http.post("/v1/detect", **form(payload))) for _ in range(4)]
            await asyncio.sleep(0.5)
            stopper = asyncio.create_task(asyncio.to_thread(server.stop))
            answers = await asyncio.gather(*sent)
            await stopper
            return [answer.status_code for answer in answers]

    assert asyncio.run(scenario()) == [200] * 4
    assert server.process.returncode == 0
    assert "Traceback" not in server.log()
