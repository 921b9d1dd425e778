"""Memory of a live service under the worst requests its default settings allow.

    python bench/memory.py                 # about 5 minutes on 2 cores

Starts ``python -m service`` with default settings (the released weights,
found as the tests find them), settles it with ordinary requests, then sends:

1. ordinary mixed traffic: 200 requests of one to three dev photos at their
   own sizes from 4 clients at once (the peak here is what a replica needs
   day to day);
2. the worst request the limits allow, twice over: 16 images of 3.9 MP
   (64 MP decoded, each shrunk to a 2.3 MP network input), then one 49 MP
   image at ``scale=0.25`` plus 15 images of 1 MP;
3. 400 requests of new exact input sizes (``scale=1``, each size once).

and prints the server's resident memory (``/proc/<pid>/status``) after each
phase, once the worker has been idle for longer than EXTD_RELEASE_IDLE_S (it
releases the memory kept for unusual inputs then), and the peak during the
phase (VmHWM, started over after each reading). The first phase includes the
start-up: on a fresh cache, the int8 quantization of the models ``auto`` puts
in int8.
"""

from __future__ import annotations

import argparse
import io
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
from PIL import Image

from tools import data
from tools.launcher import launch


def flat_png(width: int, height: int, grey: int = 120) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (grey, grey + 10, grey - 10)).save(
        buffer, "PNG", optimize=True
    )
    return buffer.getvalue()


def memory_mb(pid: int) -> dict[str, float]:
    fields = dict(
        line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
    )
    return {k: int(fields[k].split()[0]) / 1024 for k in ("VmRSS", "VmHWM")}


def reset_peak(pid: int) -> None:
    """Start the process's peak (VmHWM) over from its current RSS, so each phase has its own."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")


def post(http: httpx.Client, images: list[bytes], **params) -> int:
    files = [("images", (f"{i}.png", data, "image/png")) for i, data in enumerate(images)]
    return http.post("/v1/detect", params=params, files=files).status_code


def mixed(url: str, count: int) -> list[int]:
    """``count`` requests of one to three dev photos (own sizes), from 4 clients at once."""
    photos = sorted(data.require(*data.DEV_SPLIT, "images").rglob("*.jpg"))[::4]
    payloads = [p.read_bytes() for p in photos[: count * 2]]

    def send(i: int) -> int:
        images = [payloads[(i * 2 + k) % len(payloads)] for k in range(1 + i % 3)]
        files = [("images", (f"{k}.jpg", image, "image/jpeg")) for k, image in enumerate(images)]
        return httpx.post(f"{url}/v1/detect", files=files, timeout=600).status_code

    with ThreadPoolExecutor(4) as clients:
        return list(clients.map(send, range(count)))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--mirror", help="released weights folder (default: found data)")
    parser.add_argument("--sizes", type=int, default=400, help="new exact sizes to send")
    parser.add_argument("--mixed", type=int, default=200, help="ordinary requests to send")
    parser.add_argument("--backend", default="auto")
    parser.add_argument(
        "--idle-s",
        type=float,
        default=12.0,
        help="idle time before a reading (> EXTD_RELEASE_IDLE_S)",
    )
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as folder:
        mirror = str(args.mirror or data.require("weights"))
        server = launch(Path(folder), {"EXTD_WEIGHTS_MIRROR": mirror, "EXTD_BACKEND": args.backend})
        pid = server.process.pid
        rows = []

        def reading(label: str) -> None:
            time.sleep(args.idle_s)
            rows.append((label, memory_mb(pid)))
            now = rows[-1][1]
            print(
                f"{label:44s} RSS {now['VmRSS']:7.0f} MB   peak {now['VmHWM']:7.0f} MB", flush=True
            )
            reset_peak(pid)

        try:
            with server.client(timeout=600) as http:
                photo = flat_png(1024, 768)
                for _ in range(5):
                    assert post(http, [photo]) == 200
                reading("started and settled (5 requests of 1024x768)")
                statuses = mixed(server.url, args.mixed)
                reading(f"{args.mixed} ordinary requests, 4 clients")
                statuses.append(post(http, [flat_png(2000, 1950, grey=g) for g in range(100, 116)]))
                reading("16 x 3.9 MP (64 MP decoded)")
                big = flat_png(7000, 7000)
                small = [flat_png(1000, 1000, grey=g) for g in range(100, 115)]
                statuses.append(post(http, [big], scale=0.25))
                statuses.append(post(http, small))
                reading("49 MP at scale 0.25, then 15 x 1 MP")
                for i in range(args.sizes):
                    statuses.append(post(http, [flat_png(320 + i, 240 + i // 2)], scale=1))
                reading(f"{args.sizes} new exact sizes")
            print("statuses:", sorted(set(statuses)))
            before, worst = rows[0][1], max(r[1]["VmHWM"] for r in rows[1:])
            print(
                f"\npeak growth over settled: {worst - before['VmRSS']:.0f} MB; "
                f"after everything, idle: {rows[-1][1]['VmRSS'] - before['VmRSS']:+.0f} MB"
            )
        finally:
            server.stop()


if __name__ == "__main__":
    main()
