"""Hot reload: new checkpoints are picked up, bad ones refused, swaps drop no request."""

from __future__ import annotations

import os
import shutil
import threading
import time

import httpx
import pytest
from cli import run_cli
from live_server import start_server, wait_until, weights_folder
from metrics_text import sample

pytestmark = pytest.mark.slow

TOKEN = "let-me-in"


def models(url: str) -> dict[str, dict]:
    return {m["name"]: m for m in httpx.get(f"{url}/v1/models").json()["models"]}


def replace_atomically(source, target) -> None:
    staging = target.with_name(f".{target.name}.tmp")
    shutil.copyfile(source, staging)
    os.replace(staging, target)


@pytest.fixture(scope="module")
def spare(tmp_path_factory, weights_mirror):
    """Project checkpoints of the other widths, outside the server's folder."""
    folder = tmp_path_factory.mktemp("spare")
    weights_folder(folder, weights_mirror, ["extd-48", "extd-64"])
    return folder / "weights"


@pytest.fixture(scope="module")
def watched(tmp_path_factory, weights_mirror):
    folder = tmp_path_factory.mktemp("watched")
    weights_folder(folder, weights_mirror, ["extd-32"])
    env = {
        "EXTD_WATCH_INTERVAL_S": "0.3",
        "EXTD_ADMIN_TOKEN": TOKEN,
        "EXTD_DEFAULT_MODEL": "extd-32",
    }
    running = start_server(folder, env)
    yield running
    running.stop()


def test_new_checkpoints_are_loaded_without_restart(watched, spare, weights_mirror):
    shutil.copyfile(spare / "extd-48.safetensors", watched.weights_dir / "mine.safetensors")
    shutil.copyfile(weights_mirror / "EXTD_64.pth", watched.weights_dir / "release-64.pth")
    assert wait_until(lambda: {"mine", "release-64"} <= set(models(watched.url)))
    loaded = models(watched.url)
    assert loaded["mine"]["variant"] == "fpn-48-prelu"
    assert loaded["release-64"]["parameters"] == 162_352
    with watched.client() as http:
        response = http.post(
            "/v1/detect", params={"model": "mine"}, files={"images": ("a.png", samples_png())}
        )
    assert response.status_code == 200


def samples_png() -> bytes:
    import samples
    from PIL import Image

    return samples.encode(Image.new("RGB", (64, 48)), "PNG")


def test_invalid_checkpoints_are_refused_and_the_old_model_keeps_serving(watched):
    before = models(watched.url)["extd-32"]["sha256"]
    (watched.weights_dir / "broken.safetensors").write_bytes(b"\x00" * 1000)
    garbage = watched.weights_dir.parent / "garbage.safetensors"
    garbage.write_bytes(b"definitely not a checkpoint")
    replace_atomically(garbage, watched.weights_dir / "extd-32.safetensors")
    with watched.client() as http:
        denied = http.post("/v1/admin/reload")
        assert denied.status_code == 401
        assert denied.json()["code"] == "unauthorized"
        report = http.post("/v1/admin/reload", headers={"Authorization": f"Bearer {TOKEN}"}).json()
    assert "extd-32" in report["models"]
    # The watcher may have refused them first; either way they are refused, not loaded.
    assert wait_until(
        lambda: (
            sample(
                httpx.get(f"{watched.url}/metrics").text,
                "extd_model_loads_total",
                result="refused",
            )
            >= 2
        )
    )
    current = models(watched.url)
    assert "broken" not in current
    assert current["extd-32"]["sha256"] == before
    with watched.client() as http:
        assert (
            http.post("/v1/detect", files={"images": ("a.png", samples_png())}).status_code == 200
        )


def test_a_swap_under_load_drops_no_request(watched, spare, dev_images):
    payload = dev_images[0].read_bytes()
    statuses: list[int] = []
    stop = threading.Event()

    def keep_asking() -> None:
        with watched.client() as http:
            while not stop.is_set():
                response = http.post(
                    "/v1/detect",
                    params={"model": "extd-32", "max_side": 256},
                    files={"images": ("a.jpg", payload)},
                )
                statuses.append(response.status_code)

    clients = [threading.Thread(target=keep_asking) for _ in range(3)]
    for client in clients:
        client.start()
    time.sleep(1.0)
    replace_atomically(spare / "extd-64.safetensors", watched.weights_dir / "extd-32.safetensors")
    swapped = wait_until(lambda: models(watched.url)["extd-32"]["variant"] == "fpn-64-prelu")
    time.sleep(1.0)
    stop.set()
    for client in clients:
        client.join()
    assert swapped
    assert len(statuses) > 6
    assert set(statuses) == {200}


def test_training_publishes_each_checkpoint_into_a_live_service(watched, dev_split, tmp_path):
    target = watched.weights_dir / "trained.safetensors"
    options = {
        "--data-root": dev_split,
        "--out": tmp_path / "run",
        "--variant": "fpn-32-prelu",
        "--limit-images": 4,
        "--batch-size": 2,
        "--input-size": 128,
        "--iterations": 2,
        "--workers": 0,
        "--checkpoint-every": 1,
        "--publish": target,
    }
    result = run_cli("train", *(str(part) for pair in options.items() for part in pair))
    assert result.returncode == 0, result.stderr[-3000:]
    assert not [p for p in watched.weights_dir.iterdir() if p.name.startswith(".")]

    def served_iteration() -> int | None:
        model = models(watched.url).get("trained")
        return model and model["training"]["iteration"]

    assert wait_until(lambda: served_iteration() == 2)
    with watched.client() as http:
        response = http.post(
            "/v1/detect", params={"model": "trained"}, files={"images": ("a.png", samples_png())}
        )
    assert response.status_code == 200, response.text
