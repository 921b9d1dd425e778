"""Video jobs beside photos: what a job costs the photos, and a job's frames a second.

    python bench/jobs.py                      # one process, the embedded queue (the default)
    python bench/jobs.py --requests 40 --seconds 12 --workers 1 2

Part 1 starts ``python -m service`` as shipped (one process, the SQLite queue,
one job worker) and sends real 1024x768 WIDER photos to ``/v1/detect`` one at a
time: first idle, then while a 1080p job runs (a dev photo panned over at
1920x1080 and 25 frames a second). It prints p50 and p95 side by side; the
target is a p50 during the job of at most twice the idle one. Part 2 runs two
such jobs at once with 1 and with 2 job workers in the process and prints the
frames a second of all jobs together.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import av
import numpy as np
from PIL import Image

from model.options import RuntimeOptions
from model.weights import pull
from tools import data
from tools.launcher import RunningServer, launch


def clip_1080p(photo: Path, target: Path, seconds: float) -> bytes:
    """``photo`` enlarged to 1920x1080 and panned sideways, at 25 frames a second."""
    base = np.asarray(Image.open(photo).convert("RGB").resize((2400, 1080)))
    frames = round(25 * seconds)
    with av.open(str(target), "w") as out:
        stream = out.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 1920, 1080, "yuv420p"
        stream.options = {"preset": "veryfast"}
        for index in range(frames):
            left = round(index * (2400 - 1920) / max(1, frames - 1))
            frame = av.VideoFrame.from_ndarray(
                np.ascontiguousarray(base[:, left : left + 1920]), format="rgb24"
            )
            frame.pts = index
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return target.read_bytes()


def latencies(server: RunningServer, photo: bytes, count: int) -> list[float]:
    """Milliseconds of ``count`` requests sent one after another."""
    found = []
    with server.client() as http:
        for _ in range(count):
            started = time.perf_counter()
            answer = http.post("/v1/detect", files={"images": ("photo.jpg", photo)})
            answer.raise_for_status()
            found.append((time.perf_counter() - started) * 1000)
    return found


def post_job(server: RunningServer, clip: bytes) -> str:
    with server.client() as http:
        answer = http.post("/v1/jobs/anonymize", files={"video": ("clip.mp4", clip)})
        answer.raise_for_status()
        return answer.headers["location"]


def job_state(server: RunningServer, location: str) -> dict:
    with server.client() as http:
        return http.get(location).json()


def wait_running(server: RunningServer, location: str) -> None:
    while job_state(server, location)["frames_done"] < 2:
        time.sleep(0.2)


def wait_done(server: RunningServer, locations: list[str]) -> None:
    while any(job_state(server, loc)["state"] in ("queued", "running") for loc in locations):
        time.sleep(0.5)
    for location in locations:
        state = job_state(server, location)
        if state["state"] != "done":
            raise SystemExit(f"job {location}: {state}")


def percentiles(values: list[float]) -> str:
    return f"{np.percentile(values, 50):7.0f} {np.percentile(values, 95):7.0f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=30, help="photos per measurement")
    parser.add_argument("--seconds", type=float, default=12.0, help="length of the 1080p clip")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--backend", default="auto")
    args = parser.parse_args()
    photo_path = data.require(*data.GROUP_PHOTO)
    photo = photo_path.read_bytes()
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        mirror = data.require("weights")
        pull(runtime=RuntimeOptions(weights_dir=folder / "weights", weights_mirror=str(mirror)))
        clip = clip_1080p(photo_path, folder / "clip.mp4", args.seconds)
        env = {
            "EXTD_BACKEND": args.backend,
            "EXTD_WATCH_WEIGHTS": "false",
            "EXTD_WEIGHTS_DIR": str(folder / "weights"),
        }
        server = launch(folder / "one", env | {"EXTD_JOBS_DIR": str(folder / "jobs-one")})
        try:
            latencies(server, photo, 5)  # warm
            idle = latencies(server, photo, args.requests)
            location = post_job(server, clip)
            wait_running(server, location)
            busy = latencies(server, photo, args.requests)
            still_running = job_state(server, location)["state"] == "running"
            started = time.monotonic()
            wait_done(server, [location])
            frames = job_state(server, location)["frames_total"]
        finally:
            server.stop()
        print(f"/v1/detect, one photo at a time ({photo_path.name}, backend {args.backend}), ms")
        print(f"{'':28s} {'p50':>7s} {'p95':>7s}")
        print(f"{'idle':28s} {percentiles(idle)}")
        print(f"{'while a 1080p job runs':28s} {percentiles(busy)}")
        ratio = np.percentile(busy, 50) / np.percentile(idle, 50)
        print(f"p50 ratio {ratio:.2f} (target <= 2); the job ran throughout: {still_running}")
        print(f"the job: {frames} frames, finished {time.monotonic() - started:.0f} s after")
        print()
        print(f"two {args.seconds:g} s 1080p jobs at once, frames a second of both together")
        for workers in args.workers:
            env_workers = env | {
                "EXTD_JOB_WORKERS": str(workers),
                "EXTD_JOBS_DIR": str(folder / f"jobs-{workers}"),
            }
            server = launch(folder / f"workers-{workers}", env_workers)
            try:
                locations = [post_job(server, clip) for _ in range(2)]
                started = time.monotonic()
                wait_done(server, locations)
                elapsed = time.monotonic() - started
                total = sum(job_state(server, loc)["frames_total"] for loc in locations)
            finally:
                server.stop()
            print(f"  {workers} job worker(s): {total / elapsed:6.2f} frames/s")


if __name__ == "__main__":
    main()
