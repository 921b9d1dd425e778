"""The first request after ``/readyz`` turns 200, against the steady state, in one run.

    python bench/cold_start.py

Starts ``python -m service`` (default settings, weights from the shared folder),
waits for readiness, then times one request of a real 1024x768 WIDER photo
(a warmed size bucket), then ten more; and the same with ``EXTD_WARM_SIZES``
empty, to show what warming buys. Prints the first request's time against
the median of the rest.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from tools import data
from tools.launcher import launch


def timed(http, payload: bytes) -> float:
    start = time.perf_counter()
    response = http.post("/v1/detect", files={"images": ("a.jpg", payload, "image/jpeg")})
    assert response.status_code == 200, response.text
    return (time.perf_counter() - start) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--image", type=Path, help="a real photo (default: a dev group photo)")
    parser.add_argument("--mirror", help="the released weights' folder (default: found data)")
    parser.add_argument("--backend", default="auto")
    args = parser.parse_args()
    payload = (args.image or data.require(*data.GROUP_PHOTO)).read_bytes()
    mirror = str(args.mirror or data.require("weights"))
    print("| warm sizes | first request ms | steady ms (median of 10) | ratio |")
    print("| --- | --- | --- | --- |")
    for label, warm in (("default", None), ("none", "")):
        settings = {"EXTD_WEIGHTS_MIRROR": mirror, "EXTD_BACKEND": args.backend}
        if warm is not None:
            settings["EXTD_WARM_SIZES"] = warm
        with tempfile.TemporaryDirectory() as folder:
            server = launch(Path(folder), settings)
            try:
                with server.client() as http:
                    first = timed(http, payload)
                    steady = statistics.median(timed(http, payload) for _ in range(10))
            finally:
                server.stop()
        print(f"| {label} | {first:.0f} | {steady:.0f} | {first / steady:.2f}x |", flush=True)


if __name__ == "__main__":
    main()
