"""What an attacker or an unlucky operator does to a live server, and what the server promises."""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import shutil
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

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


def test_a_changed_variant_or_a_missing_default_file_is_visible(tmp_path, weights_mirror, spare):
    weights = weights_folder(tmp_path, weights_mirror, ["extd-32", "extd-64"])
    # No EXTD_DEFAULT_MODEL: the default is extd-64 because it was there at start.
    server = start_server(tmp_path, {"EXTD_WATCH_INTERVAL_S": "0.3"})
    try:
        shutil.copyfile(spare / "extd-48.safetensors", weights / "extd-64.safetensors")

        def variant() -> str:
            models = httpx.get(f"{server.url}/v1/models").json()["models"]
            return {m["name"]: m["variant"] for m in models}["extd-64"]

        assert wait_until(lambda: variant() == "fpn-48-prelu")
        assert metric(server.url, "extd_model_variant_changes_total", name="extd-64") == 1
        assert "changed variant: fpn-64-prelu -> fpn-48-prelu" in server.log()
        # The default's file goes: the model keeps serving, and says so; the default stays.
        (weights / "extd-64.safetensors").unlink()

        def present() -> dict[str, bool]:
            models = httpx.get(f"{server.url}/v1/models").json()["models"]
            assert [m["name"] for m in models if m["default"]] == ["extd-64"]
            return {m["name"]: m["file_present"] for m in models}

        assert wait_until(lambda: present().get("extd-64") is False)
        assert metric(server.url, "extd_model_file_missing", name="extd-64") == 1
        assert "the file of the default model extd-64 is gone" in server.log()
        assert httpx.get(f"{server.url}/readyz").status_code == 200
        with server.client() as http:
            answer = http.post("/v1/detect", **upload(big_png(64)))
            assert answer.status_code == 200, answer.text
            assert answer.json()["model"] == "extd-64"
        # A file under its name again: loaded, the flag cleared.
        shutil.copyfile(spare / "extd-48.safetensors", weights / "extd-64.safetensors")
        assert wait_until(lambda: present().get("extd-64") is True)
        assert metric(server.url, "extd_model_file_missing", name="extd-64") == 0
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


def test_png_headers_are_read_off_the_event_loop(small_server):
    """16 PNGs of 49 MP in one request (1 MB): refused from their headers alone, while a
    liveness probe keeps answering at once."""
    many = upload(*[big_png()] * 16)
    stop, latencies = threading.Event(), []

    def probe() -> None:
        while not stop.is_set():
            started = time.monotonic()
            httpx.get(f"{small_server.url}/livez", timeout=10)
            latencies.append(time.monotonic() - started)
            time.sleep(0.05)

    def client() -> list[int]:
        with small_server.client() as http:
            return [http.post("/v1/detect", **many).status_code for _ in range(4)]

    prober = threading.Thread(target=probe)
    prober.start()
    try:
        with ThreadPoolExecutor(2) as clients:
            statuses = [s for done in clients.map(lambda _: client(), range(2)) for s in done]
    finally:
        stop.set()
        prober.join()
    assert statuses == [413] * 8
    assert max(latencies) < 0.2, sorted(latencies)[-3:]


def test_malformed_http_gets_a_problem_document(small_server):
    """Beyond what one read holds, the HTTP parser refuses a header before buffering it, with a
    problem document too."""
    host, port = small_server.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as connection:
        with contextlib.suppress(OSError):  # the server may hang up before the client is done
            connection.sendall(b"GET /livez HTTP/1.1\r\nHost: x\r\nX-Huge: " + b"a" * 1_000_000)
        answer = http.client.HTTPResponse(connection)  # the head and body may come in two reads
        answer.begin()
        body = answer.read()
    assert answer.status == 400
    assert answer.getheader("content-type") == "application/problem+json"
    assert json.loads(body)["code"] == "invalid_request"


@pytest.mark.parametrize("trusted", [False, True])
def test_only_trusted_proxies_name_the_client(tmp_path, weights_mirror, trusted):
    """Wrong keys are counted per client: the socket's peer, unless a trusted proxy's
    X-Forwarded-For names another. Untrusted, the header neither dodges the throttle nor
    aims it at someone else."""
    weights_folder(tmp_path, weights_mirror, ["extd-32"])
    env = {"EXTD_WATCH_WEIGHTS": "false", "EXTD_API_KEYS": "right-key"}
    if trusted:
        env["EXTD_FORWARDED_ALLOW_IPS"] = "127.0.0.1"
    server = start_server(tmp_path, env)
    try:
        with server.client() as http:
            for i in range(12):  # "different clients" by their header
                forwarded = {"X-Forwarded-For": f"203.0.113.{i}", "X-API-Key": "wrong"}
                http.get("/v1/models", headers=forwarded)
            another = {"X-Forwarded-For": "198.51.100.7", "X-API-Key": "wrong"}
            status = http.get("/v1/models", headers=another).status_code
            right = http.get("/v1/models", headers={"X-API-Key": "right-key"}).status_code
    finally:
        server.stop()
    # Trusted: each named client has its own budget; untrusted: one address, throttled.
    assert status == (401 if trusted else 429)
    assert right == 200


def test_a_stop_during_slow_decoding_answers_in_time_and_exits(tmp_path, weights_mirror):
    """16 slow progressive JPEGs in one request on one decoder, SIGTERM half a second in:
    the request gets its problem document by its deadline, the process exits within the
    drain time and a few seconds, no traceback."""
    weights_folder(tmp_path, weights_mirror, ["extd-32"])
    env = {
        "EXTD_WATCH_WEIGHTS": "false",
        "EXTD_DECODE_THREADS": "1",
        "EXTD_MAX_REQUEST_PIXELS": "800000000",
        "EXTD_REQUEST_TIMEOUT_MS": "2000",
        "EXTD_DRAIN_TIMEOUT_S": "3",
    }
    server = start_server(tmp_path, env)
    side = 7000
    ramp = np.linspace(0, 255, side, dtype=np.uint8)
    pixels = np.stack([np.tile(ramp, (side, 1)), np.tile(ramp[:, None], (1, side))] * 2, axis=2)
    slow = samples.encode(Image.fromarray(pixels[..., :3]), "JPEG", quality=95, progressive=True)
    with ThreadPoolExecutor(1) as client:
        answer = client.submit(server.client().post, "/v1/detect", **upload(*[slow] * 16))
        time.sleep(0.5)
        stopped = time.monotonic()
        server.process.terminate()
        response = answer.result(timeout=60)
        code = server.process.wait(60)
        took = time.monotonic() - stopped
    assert_problem(response, 504, "deadline_exceeded")
    assert code == 0
    assert took < 3 + 5, took
    assert "Traceback" not in server.log()
