"""CPU backends side by side with plain eager fp32, in one run, and what ``auto`` picks.

    python bench/cpu_backends.py                      # the full tables (about 30 min on 2 cores)
    python bench/cpu_backends.py --widths 64 --sizes 1024x768 --threads 1
    python bench/cpu_backends.py --sections decision --isas avx2 avx512_vnni amx

Each measurement is one ``python -m model bench`` subprocess, so allocator
and thread settings never leak between rows. "eager (plain)" is PyTorch eager
fp32 in a default process: the baseline every ratio is against. Then batch
throughput (images/s by batch size) and peak memory. The decision table
times the OpenVINO backends for each width, one thread at the largest size,
beside the hard AP each loses against fp32 (the manifest's int8 loss; bf16
is taken to keep it), and checks that ``auto`` runs the fastest of those
within 0.3 points. ``--isas`` measures older instruction sets on this CPU
too: each subprocess runs with ``ONEDNN_MAX_CPU_ISA`` capping OpenVINO's
kernels, and ``auto`` reads the same cap (``model/backends/cpu.py``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

from model.backends import AUTO_TOLERANCE
from model.backends.cpu import INSTRUCTION_SETS, instruction_set
from model.weights import known_checkpoints
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
    isa: str | None = None,
) -> dict:
    env = dict(os.environ)
    if isa:
        env["ONEDNN_MAX_CPU_ISA"] = INSTRUCTION_SETS[isa][1]
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
        choices=["latency", "throughput", "decision"],
        default=["latency", "throughput", "decision"],
    )
    parser.add_argument(
        "--isas",
        nargs="+",
        choices=list(INSTRUCTION_SETS),
        help="instruction sets of the decision table (default: this CPU's own)",
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
    if "decision" in args.sections:
        rows += decision_table(args)
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


def decision_table(args: argparse.Namespace) -> list[dict]:
    """Per instruction set and width: each OpenVINO backend's time and accuracy loss, the
    fastest within the tolerance, and what ``auto`` ran."""
    rows = []
    size, threads = args.sizes[-1], args.threads[0]
    candidates = ["openvino", "openvino-bf16", "openvino-int8"]
    int8_loss = {e.variant.width: e.int8_hard_ap_loss for e in known_checkpoints().values()}
    print(
        f"\n## auto's decision: ms per image at {size}, {threads} thread(s), and the hard AP "
        f"lost against fp32 (points); auto must run the fastest within {AUTO_TOLERANCE}"
    )
    print("| instruction set | width | " + " | ".join(candidates) + " | fastest kept | auto |")
    print("| --- " * (len(candidates) + 4) + "|", flush=True)
    for isa in args.isas or [instruction_set()]:
        for width in args.widths:
            weights = args.weights_pattern.format(width=width)
            timed = {}
            for backend in [*candidates, "auto"]:
                r = measure(
                    weights,
                    backend,
                    image=args.image,
                    threads=threads,
                    size=size,
                    batch=1,
                    runs=args.runs,
                    isa=isa,
                )
                rows.append({"kind": "decision", "label": backend, "isa": isa, **r})
                timed[backend] = r
            losses = {"openvino": 0.0, "openvino-bf16": 0.0, "openvino-int8": int8_loss[width]}
            kept = [b for b in candidates if losses[b] is not None and losses[b] <= AUTO_TOLERANCE]
            fastest = min(kept, key=lambda b: timed[b]["ms_per_image"])
            ran = timed["auto"]["backend"]
            cells = [
                f"{timed[b]['ms_per_image']:.0f}"
                + (f" ({_points(losses[b])})" if b == "openvino-int8" else "")
                + ("" if timed[b]["backend"] == b else f" (ran {timed[b]['backend']})")
                for b in candidates
            ]
            verdict = "ok" if ran == fastest else "NOT the fastest kept"
            print(
                f"| {isa} | {width} | " + " | ".join(cells) + f" | {fastest} "
                f"| {timed['auto']['ms_per_image']:.0f} {ran} ({verdict}) |",
                flush=True,
            )
    return rows


def _points(loss: float | None) -> str:
    return "not measured" if loss is None else f"{loss:+.2f}"


if __name__ == "__main__":
    main()
