"""What an attacker or an unlucky operator does to a live server, and what the server promises."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import threading
import time

import httpx
import numpy as np
import pytest
import samples
from helpers import assert_problem, upload
from live_server import start_server, wait_until, weights_folder
from metrics_text import sample
from PIL import Image

pytestmark = pytest.mark.slow


def metric(url: str, name: str, /, **labels: str) -> float:
    return sample(httpx.get(f"{url}/metrics").text, name, **labels)


def big_png(side: int = 7000) -> bytes:
    """A real PNG of ``side x side`` grey pixels: tens of KB that decode to ``side**2`` pixels."""
    return samples.encode(Image.new("L", (side, side), 128), "PNG", optimize=True)


@pytest.fixture(scope="module")
def spare(tmp_path_factory, weights_mirror):
    folder = tmp_path_factory.mktemp("spare")
    return weights_folder(folder, weights_mirror, ["extd-32", "extd-48"])


def test_overwriting_a_loaded_checkpoint_in_place_keeps_serving(tmp_path, weights_mirror, spare):
    weights = weights_folder(tmp_path, weights_mirror, ["extd-32", "extd-64"])
    server = start_server(tmp_path, {"EXTD_WATCH_WEIGHTS": "false"})
    try:
        before = {m["name"]: m for m in httpx.get(f"{server.url}/v1/models").json()["models"]}
        # Truncate and rewrite the same inode the server read its tensors from.
        shutil.copyfile(spare / "extd-48.safetensors", weights / "extd-64.safetensors")
        after = {m["name"]: m for m in httpx.get(f"{server.url}/v1/models").json()["models"]}
        assert after["extd-64"] == before["extd-64"]
        with server.client() as http:
            response = http.post(
                "/v1/detect", **upload(samples.encode(Image.new("RGB", (64, 48)), "PNG"))
            )
        assert response.status_code == 200
        assert server.process.poll() is None
    finally:
        assert server.stop() == 0


def test_a_changed_variant_or_a_missing_default_is_visible(tmp_path, weights_mirror, spare):
    weights = weights_folder(tmp_path, weights_mirror, ["extd-32", "extd-64"])
    env = {"EXTD_WATCH_INTERVAL_S": "0.3", "EXTD_DEFAULT_MODEL": "extd-64"}
    server = start_server(tmp_path, env)
    try:
        shutil.copyfile(spare / "extd-48.safetensors", weights / "extd-64.safetensors")

        def variant() -> str:
            models = httpx.get(f"{server.url}/v1/models").json()["models"]
            return {m["name"]: m["variant"] for m in models}["extd-64"]

        assert wait_until(lambda: variant() == "fpn-48-prelu")
        assert metric(server.url, "extd_model_variant_changes_total", name="extd-64") == 1
        assert "changed variant: fpn-64-prelu -> fpn-48-prelu" in server.log()
        (weights / "extd-64.safetensors").unlink()
        assert wait_until(lambda: httpx.get(f"{server.url}/readyz").status_code == 503)
        assert assert_problem(httpx.get(f"{server.url}/readyz"), 503, "not_ready")["reason"] == (
            "default_missing"
        )
        with server.client() as http:
            assert_problem(http.post("/v1/detect", **upload(big_png(64))), 404, "model_not_found")
    finally:
        server.stop()


@pytest.fixture(scope="module")
def small_server(tmp_path_factory, weights_mirror):
    folder = tmp_path_factory.mktemp("small")
    weights_folder(folder, weights_mirror, ["extd-32"])
    running = start_server(folder, {"EXTD_WATCH_WEIGHTS": "false", "EXTD_MAX_HEADER_BYTES": "8192"})
    yield running
    running.stop()


def test_work_and_memory_are_bounded_before_decoding(small_server, dev_images):
    url, photo = small_server.url, dev_images[0].read_bytes()
    decoded = metric(url, "extd_preprocess_duration_seconds_count")
    with small_server.client() as http:
        scaled = http.post("/v1/detect", params={"scale": 4}, **upload(photo, photo))
        assert assert_problem(scaled, 413, "input_too_large")["index"] == 0
        bombs = http.post("/v1/detect", **upload(big_png(), big_png()))  # 2 x 49 MP in 100 KB
        assert assert_problem(bombs, 413, "request_too_large")["limit"] == 64_000_000
        long_wait = http.post("/v1/detect", params={"timeout_ms": 600_000}, **upload(photo))
        assert assert_problem(long_wait, 422, "invalid_parameters")["limit"] == 60_000
        # None of these was decoded; one large image alone is, and is shrunk for the network.
        assert metric(url, "extd_preprocess_duration_seconds_count") == decoded
        alone = http.post("/v1/detect", **upload(big_png()))
        assert alone.status_code == 200, alone.text
        assert alone.json()["results"][0]["width"] == 7000


def test_header_limits(small_server):
    with small_server.client() as http:
        big = http.get("/v1/models", headers={"X-Big": "a" * 20_000})
        assert assert_problem(big, 431, "headers_too_large")["limit"] == 8192
        many = http.get("/v1/models", headers={f"X-Many-{i}": str(i) for i in range(1000)})
        assert_problem(many, 431, "headers_too_large")
    # Beyond what one read holds, the parser itself refuses: no 16 MB header is buffered.
    host, port = small_server.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as connection:
        head = f"GET /livez HTTP/1.1\r\nHost: {host}\r\nX-Huge: "
        with contextlib.suppress(OSError):  # the server may hang up before the client is done
            connection.sendall(head.encode() + b"a" * 4_000_000 + b"\r\n\r\n")
        answer = connection.recv(1024).decode(errors="replace")
    assert answer.startswith("HTTP/1.1 400"), answer[:200]
    assert httpx.get(f"{small_server.url}/livez").status_code == 200


def test_sigterm_drains_without_losing_a_request(tmp_path, weights_mirror, dev_images):
    weights_folder(tmp_path, weights_mirror, ["extd-32"])
    env = {
        "EXTD_WATCH_WEIGHTS": "false",
        "EXTD_DRAIN_TIMEOUT_S": "8",
        "EXTD_REQUEST_TIMEOUT_MS": "8000",
    }
    server = start_server(tmp_path, env)
    payload = dev_images[2].read_bytes()
    readiness: list[dict] = []

    def probe_readiness() -> None:
        time.sleep(1.0)  # SIGTERM went out at 0.5 s
        response = httpx.get(f"{server.url}/readyz", timeout=30)
        readiness.append({"status": response.status_code, **response.json()})

    async def scenario() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=server.url, timeout=120) as http:
            tasks = [
                asyncio.create_task(
                    http.post("/v1/detect", params={"timeout_ms": 8000}, **upload(payload))
                )
                for _ in range(60)
            ]
            await asyncio.sleep(0.5)
            server.process.terminate()
            return await asyncio.gather(*tasks)

    prober = threading.Thread(target=probe_readiness)
    prober.start()
    responses = asyncio.run(scenario())
    prober.join()
    assert server.process.wait(60) == 0
    statuses = [r.status_code for r in responses]
    # Deadlines fit in the drain, so what does not finish in time gets its 504 first.
    assert set(statuses) <= {200, 503, 504}, statuses
    assert 200 in statuses
    codes = {503: "shutting_down", 504: "deadline_exceeded"}
    for response in responses:
        if response.status_code != 200:
            assert_problem(response, response.status_code, codes[response.status_code])
    assert readiness == [readiness[0]]
    assert (readiness[0]["status"], readiness[0]["reason"]) == (503, "stopping")
    assert "Traceback" not in server.log()


def test_memory_is_given_back_after_a_large_request(small_server):
    def rss() -> float:
        return metric(small_server.url, "process_resident_memory_bytes") / 2**20

    before = rss()
    large = samples.encode(Image.fromarray(np.full((1700, 1700, 3), 90, np.uint8)), "PNG")
    with small_server.client() as http:
        response = http.post("/v1/detect", params={"scale": 1}, **upload(large))
    assert response.status_code == 200
    # Released once the worker is idle: back within 500 MB of where it was.
    assert wait_until(lambda: rss() < before + 500, timeout_s=30), (before, rss())
