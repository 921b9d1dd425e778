"""CPU backends side by side with plain eager fp32, in one run.

    python bench/cpu_backends.py                      # the full table (about 20 min on 2 cores)
    python bench/cpu_backends.py --widths 64 --sizes 1024x768 --threads 1

Each measurement is one ``python -m model bench`` subprocess, so allocator
and thread settings never leak between rows. "eager (plain)" is PyTorch eager
fp32 in a default process: the baseline every ratio is against. Then batch
throughput (images/s by batch size) and peak memory.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

from tools import data

BACKENDS = [
    "eager (plain)", "torch", "torch-fused", "openvino", "openvino-bf16", "openvino-int8", "auto"
]  # fmt: skip


def measure(
    weights: str,
    backend: str,
    *,
    image: str,
    threads: int,
    size: str,
    batch: int,
    runs: int,
    min_face: int | None = None,
) -> dict:
    env = dict(os.environ)
    if backend == "eager (plain)":
        backend, env["EXTD_TUNE_ALLOCATOR"] = "torch", "0"
    options = {"--weights": weights, "--backend": backend, "--image": image}
    options |= {"--threads": threads, "--size": size}
    options |= {"--batch": batch, "--runs": runs}
    if min_face:
        options["--min-face"] = min_face
    command = [sys.executable, "-m", "model", "bench", "--json"]
    command += [str(part) for pair in options.items() for part in pair]
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    if done.returncode:
        raise RuntimeError(
            f"{' '.join(command)} failed with exit code {done.returncode}:\n{done.stderr[-2000:]}"
        )
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--weights-pattern", help="checkpoint path with {width} (default: the found data's)"
    )
    parser.add_argument(
        "--image", help="the real photo every size is resized from (default: a dev group photo)"
    )
    parser.add_argument("--widths", nargs="+", type=int, default=[32, 48, 64])
    parser.add_argument("--sizes", nargs="+", default=["640x480", "1024x768"])
    parser.add_argument(
        "--min-faces", nargs="*", type=int, default=[40], help="rows of the largest size"
    )
    parser.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--backends", nargs="+", default=BACKENDS)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 4, 16, 64])
    parser.add_argument(
        "--batch-backends",
        nargs="+",
        default=["torch", "openvino", "openvino-bf16", "openvino-int8"],
    )
    parser.add_argument(
        "--sections",
        nargs="+",
        choices=["latency", "throughput"],
        default=["latency", "throughput"],
    )
    parser.add_argument(
        "--calibration",
        help="photos openvino-int8 is calibrated on (EXTD_CALIBRATION_DIR; default: the "
        "photos shipped in model/calibration)",
    )
    parser.add_argument("--out", help="write every measurement as JSON here")
    args = parser.parse_args()
    args.weights_pattern = args.weights_pattern or str(data.require("weights") / "EXTD_{width}.pth")
    args.image = args.image or str(data.require(*data.GROUP_PHOTO))
    if args.calibration:  # read by every measuring subprocess; int8 is cached per width
        os.environ["EXTD_CALIBRATION_DIR"] = args.calibration

    rows = []
    if "latency" in args.sections:
        rows += latency_table(args)
    if "throughput" in args.sections:
        rows += throughput_table(args)
    if args.out:
        with open(args.out, "w") as handle:
            json.dump(rows, handle, indent=2)


def latency_table(args: argparse.Namespace) -> list[dict]:
    """One image at each size (and the largest with each --min-faces), per backend; the cell
    of ``auto`` names what it chose for that width."""
    rows = []
    print("## Latency, one image (ms), ratio against eager (plain) of the same row")
    print("| width | size | threads | " + " | ".join(args.backends) + " |")
    print("| --- | --- | --- | " + " | ".join("---" for _ in args.backends) + " |", flush=True)
    cases = [(size, None) for size in args.sizes]
    cases += [(args.sizes[-1], min_face) for min_face in args.min_faces]
    for width in args.widths:
        weights = args.weights_pattern.format(width=width)
        for size, min_face in cases:
            for threads in args.threads:
                cells, base = [], None
                for backend in args.backends:
                    r = measure(
                        weights,
                        backend,
                        image=args.image,
                        threads=threads,
                        size=size,
                        batch=1,
                        runs=args.runs,
                        min_face=min_face,
                    )
                    rows.append({"kind": "latency", "label": backend, **r})
                    base = base or r["ms_per_image"]
                    cell = f"{r['ms_per_image']:.0f} ({base / r['ms_per_image']:.1f}x)"
                    if backend == "auto":
                        cell += f" {r['backend']}"
                    cells.append(cell)
                shown = f"{size}, min_face {min_face}" if min_face else size
                print(f"| {width} | {shown} | {threads} | " + " | ".join(cells) + " |", flush=True)
    return rows


def throughput_table(args: argparse.Namespace) -> list[dict]:
    """Images/s by batch size; a batch that does not fit in memory is reported, not fatal."""
    rows = []
    print("\n## Throughput by batch size (images/s), EXTD-64, 640x480, all threads; peak RSS (MB)")
    print("| backend | " + " | ".join(f"batch {b}" for b in args.batches) + " | peak RSS |")
    print("| --- | " + " | ".join("---" for _ in args.batches) + " | --- |", flush=True)
    weights = args.weights_pattern.format(width=64)
    threads = os.cpu_count() or 1
    for backend in args.batch_backends:
        cells, peak = [], 0.0
        for batch in args.batches:
            try:
                r = measure(
                    weights,
                    backend,
                    image=args.image,
                    threads=threads,
                    size="640x480",
                    batch=batch,
                    runs=2,
                )
            except RuntimeError as error:
                print(error, file=sys.stderr)
                cells.append("failed")
                continue
            rows.append({"kind": "throughput", "label": backend, **r})
            cells.append(f"{r['images_per_s']:.2f}")
            peak = max(peak, r["peak_rss_mb"])
        print(f"| {backend} | " + " | ".join(cells) + f" | {peak:.0f} |", flush=True)
    return rows


if __name__ == "__main__":
    main()
