"""Every GPU measurement in one run: forward, JPEG to boxes, HTTP under load, accuracy.

    python bench/gpu_all.py --split gpu-carry/split --weights gpu-carry/EXTD_64.pth --out "$OUT"
    python bench/gpu_all.py --device cpu --size 128 --batches 1 2 --jpegs 8 --seconds 0.5 \\
        --http-seconds 3 --clients 4 --ap-images 8 --out /tmp/gpu-dry-run      # a dry run

Made for a lent GPU machine with little time: each section prints as it goes
and the JSON (``gpu_all.json`` under ``--out``) is rewritten after each, so
what was measured survives a timeout. Sections:

1. forward images/s by batch at ``--size`` square: eager fp32 (the reference),
   plain eager bf16, ``torch-bf16`` (folded, channels-last, CUDA graphs) and
   ``torch-compiled`` (inductor), with each one's first-call time and largest
   logit difference from fp32; with the profiler's top kernels for the fastest
   when it misses ``--target-forward``;
2. JPEG to boxes images/s: real 1024x768 JPEGs, decoded on the CPU (a thread
   pool) or on the GPU (nvJPEG, :mod:`model.gpu_jpeg`), then the Detector;
3. HTTP: the service in the several-process layout (``--http-workers`` HTTP
   processes, one inference process), ``--clients`` closed-loop clients
   sending those JPEGs: images/s, p50, p99, 5xx;
4. hard AP (and easy, medium) on ``--ap-images`` dev images for each backend
   against fp32.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch
from PIL import Image

from model.backends.compiled import CompiledBackend
from model.backends.eager import EagerBackend
from model.backends.fused import FusedBackend
from model.detector import Detector
from model.eval import evaluate, load_split, predict_split
from model.gpu_jpeg import decode_jpegs
from model.images import read_header
from model.options import SERVING, RuntimeOptions, ScalePolicy
from model.weights import load_checkpoint, pull
from tools import data
from tools.launcher import launch
from tools.load import closed_loop


class PlainBf16:
    """The network cast to bf16 and nothing else: the baseline of the GPU targets."""

    name = "eager bf16"

    def __init__(self, checkpoint, device: torch.device) -> None:
        self.network = checkpoint.build().to(device, torch.bfloat16)

    @torch.inference_mode()
    def __call__(self, batch: torch.Tensor):
        return tuple(out.float() for out in self.network(batch.to(torch.bfloat16)))


class Results:
    """What was measured so far, written out after every section."""

    def __init__(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.path = folder / "gpu_all.json"
        self.values: dict = {}

    def save(self, section: str, value) -> None:
        self.values[section] = value
        self.path.write_text(json.dumps(self.values, indent=1))


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(work, device: torch.device, seconds: float, per_run: int) -> float:
    """Runs of ``work`` a second for ``seconds``, times ``per_run`` images."""
    work()
    synchronize(device)
    runs, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        work()
        runs += 1
    synchronize(device)
    return round(runs * per_run / (time.perf_counter() - start), 1)


def forward(args, checkpoint, device: torch.device, results: Results) -> str:
    """Section 1; returns the name of the fastest backend at the largest batch."""
    reference = EagerBackend(checkpoint, device)
    backends = {
        "eager fp32": reference,
        "eager bf16": PlainBf16(checkpoint, device),
        "torch-bf16": FusedBackend(checkpoint, device, dtype=torch.bfloat16),
        "torch-compiled": CompiledBackend(checkpoint, device),
    }
    probe = torch.randn(args.batches[-1], 3, args.size, args.size, device=device) * 60
    expected = reference(probe)[1]
    first = {}
    for name, backend in list(backends.items())[1:]:
        start = time.perf_counter()
        difference = (backend(probe)[1] - expected).abs().max().item()
        synchronize(device)
        first[name] = {"first_call_s": round(time.perf_counter() - start, 1),
                       "largest_logit_difference": round(difference, 4)}  # fmt: skip
        print(f"{name}: first call {first[name]['first_call_s']} s, largest logit difference "
              f"from fp32 {difference:.4f}", flush=True)  # fmt: skip
    print(f"forward only, {args.size}x{args.size}, images/s")
    print(f"{'batch':>6s} " + " ".join(f"{name:>15s}" for name in backends))
    rows = []
    for size in args.batches:
        batch = torch.randn(size, 3, args.size, args.size, device=device) * 60
        row = {"batch": size}
        for name, backend in backends.items():
            row[name] = timed(lambda b=backend, x=batch: b(x), device, args.seconds, size)
        rows.append(row)
        print(f"{size:6d} " + " ".join(f"{row[name]:15.1f}" for name in backends), flush=True)
    fastest = max(list(backends)[2:], key=lambda name: rows[-1][name])
    section = {"size": args.size, "first_calls": first, "rows": rows, "fastest": fastest}
    if rows[-1][fastest] < args.target_forward:
        section["top_kernels"] = top_kernels(backends[fastest], probe)
        print(section["top_kernels"], flush=True)
    results.save("forward", section)
    return fastest


def top_kernels(backend, batch: torch.Tensor, rows: int = 15) -> str:
    """The profiler's table of the kernels that took the most time over a few batches."""
    activities = [torch.profiler.ProfilerActivity.CPU]
    if batch.device.type == "cuda":
        activities.append(torch.profiler.ProfilerActivity.CUDA)
    with torch.profiler.profile(activities=activities) as profile:
        for _ in range(5):
            backend(batch)
        synchronize(batch.device)
    order = "cuda_time_total" if batch.device.type == "cuda" else "cpu_time_total"
    return profile.key_averages().table(sort_by=order, row_limit=rows)


def test_jpegs(split, count: int) -> list[bytes]:
    """``count`` dev photos as 1024x768 JPEGs (quality 90), the service's usual input."""
    jpegs = []
    for name in split.subset(count).images:
        image = Image.open(split.image_path(name)).convert("RGB").resize((1024, 768))
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=90)
        jpegs.append(buffer.getvalue())
    return jpegs


def jpeg_to_boxes(args, checkpoint, device, backend: str, jpegs, results: Results) -> None:
    """Section 2: decoding (CPU threads or nvJPEG), the network and post-processing."""
    detector = Detector(checkpoint, device=device, backend=backend, batch_size=args.jpeg_batch)
    policy = ScalePolicy()
    batches = [jpegs[i : i + args.jpeg_batch] for i in range(0, len(jpegs), args.jpeg_batch)]
    section = {"backend": backend, "batch": args.jpeg_batch}
    with ThreadPoolExecutor(args.decode_threads) as pool:

        def on_cpu() -> None:
            for batch in batches:
                items = list(pool.map(lambda jpeg: detector.load(jpeg, policy), batch))
                detector.run(items, [SERVING] * len(items))

        section["cpu_decode_images_per_s"] = timed(on_cpu, device, args.seconds, len(jpegs))
    print(f"JPEG to boxes, CPU decoding ({args.decode_threads} threads), {backend}: "
          f"{section['cpu_decode_images_per_s']} images/s", flush=True)  # fmt: skip
    if device.type == "cuda":
        headers = [read_header(jpeg) for jpeg in jpegs]
        plans = [detector.plan(header.size, policy) for header in headers]

        def on_gpu() -> None:
            for start in range(0, len(jpegs), args.jpeg_batch):
                chunk = slice(start, start + args.jpeg_batch)
                items = decode_jpegs(jpegs[chunk], headers[chunk], plans[chunk], device)
                detector.run(items, [SERVING] * len(items))

        try:
            section["gpu_decode_images_per_s"] = timed(on_gpu, device, args.seconds, len(jpegs))
            print(f"JPEG to boxes, nvJPEG, {backend}: "
                  f"{section['gpu_decode_images_per_s']} images/s", flush=True)  # fmt: skip
        except ImportError as error:
            section["gpu_decode"] = f"not run: {error}"
    results.save("jpeg_to_boxes", section)


def http(args, weights: Path, device, backend: str, jpegs, results: Results) -> None:
    """Section 3: the several-process layout under closed-loop load."""
    settings = {
        "EXTD_WEIGHTS_DIR": str(weights),
        "EXTD_WATCH_WEIGHTS": "false",
        "EXTD_LOG_LEVEL": "warning",
        "EXTD_DEVICE": str(device),
        "EXTD_BACKEND": backend,
        "EXTD_HTTP_WORKERS": str(args.http_workers),
        "EXTD_MAX_BATCH_SIZE": str(args.jpeg_batch),
        "EXTD_MAX_BATCH_PIXELS": str(args.jpeg_batch * 1024 * 768),
        "EXTD_QUEUE_SIZE": str(4 * args.clients),
        "EXTD_DECODE_THREADS": str(args.decode_threads),
        "EXTD_WARM_SIZES": "1024x768",
        "EXTD_JOB_WORKERS": "0",
    }
    with tempfile.TemporaryDirectory() as scratch:
        server = launch(Path(scratch), settings, timeout_s=600)
        try:
            load = closed_loop(server.url, jpegs, {}, clients=args.clients,
                               warmup_s=args.http_seconds / 3, duration_s=args.http_seconds,
                               per_request=1)  # fmt: skip
            measured = asyncio.run(load)
        finally:
            server.stop()
    measured["5xx"] = sum(n for status, n in measured["statuses"].items() if int(status) >= 500)
    measured |= {"http_workers": args.http_workers, "clients": args.clients, "backend": backend}
    print(f"HTTP, {args.http_workers} HTTP workers, {args.clients} clients, {backend}: "
          f"{measured['images_per_s']:.1f} images/s, p50 {measured['p50_ms']:.0f} ms, "
          f"p99 {measured['p99_ms']:.0f} ms, 5xx {measured['5xx']}", flush=True)  # fmt: skip
    results.save("http", measured)


def accuracy(args, checkpoint, device, results: Results) -> None:
    """Section 4: each backend's AP against fp32's on the same images (own size)."""
    split = load_split(args.split).subset(args.ap_images)
    section = {"images": len(split.images)}
    for backend in ("torch", "torch-bf16", "torch-compiled"):
        detector = Detector(checkpoint, device=device, backend=backend)
        found = predict_split(detector, split, progress=False)
        section[backend] = {k: round(v, 4) for k, v in evaluate(found, split).ap.items()}
        print(f"AP on {len(split.images)} dev images, {backend}: {section[backend]}", flush=True)
    results.save("accuracy", section)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--weights", type=Path, help="EXTD_64.pth (default: the found data's)")
    parser.add_argument("--split", type=Path, help="a WIDER split (default: the dev split)")
    parser.add_argument("--out", type=Path, default=Path("gpu-results"))
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--size", type=int, default=640)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8, 32, 64, 128])
    parser.add_argument("--seconds", type=float, default=2.0, help="timing per cell")
    parser.add_argument("--target-forward", type=float, default=3000.0, help="images/s")
    parser.add_argument("--jpegs", type=int, default=256, help="1024x768 JPEGs of section 2-3")
    parser.add_argument("--jpeg-batch", type=int, default=64)
    parser.add_argument("--decode-threads", type=int, default=8)
    parser.add_argument("--http-workers", type=int, default=4)
    parser.add_argument("--clients", type=int, default=128)
    parser.add_argument("--http-seconds", type=float, default=30.0)
    parser.add_argument("--ap-images", type=int, default=200)
    parser.add_argument("--sections", nargs="+", default=["forward", "jpeg", "http", "ap"])
    args = parser.parse_args()

    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    device = torch.device(args.device)
    weights = args.weights or data.require("weights", "EXTD_64.pth")
    args.split = args.split or data.require(*data.DEV_SPLIT)
    checkpoint = load_checkpoint(weights)
    results = Results(args.out)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU (dry run)"
    results.save("machine", {"device": name, "torch": torch.__version__})
    print(f"{name}, torch {torch.__version__}, {checkpoint.variant}", flush=True)
    fastest = "torch-compiled" if device.type == "cuda" else "torch-fused"
    if "forward" in args.sections:
        fastest = forward(args, checkpoint, device, results)
    if device.type != "cuda":  # a dry run: no new shapes to compile on the CPU
        fastest = "torch-fused"
    jpegs = test_jpegs(load_split(args.split), args.jpegs)
    if "jpeg" in args.sections:
        jpeg_to_boxes(args, checkpoint, device, fastest, jpegs, results)
    if "http" in args.sections:
        with tempfile.TemporaryDirectory() as scratch:
            folder = Path(scratch) / "weights"
            mirror = str(weights.parent)
            pull(["extd-64"], runtime=RuntimeOptions(weights_dir=folder, weights_mirror=mirror))
            http(args, folder, device, fastest, jpegs, results)
    if "ap" in args.sections:
        accuracy(args, checkpoint, device, results)
    print(f"results: {results.path}")


if __name__ == "__main__":
    main()
