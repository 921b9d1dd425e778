"""GPU forward throughput by batch size, side by side with plain eager, in one run.

    python bench/gpu_inference.py --size 640

Rows: eager fp32 (TF32 off, the reference), plain eager bf16 (the network
cast to bf16, nothing else), the ``torch-bf16`` backend (batch norm folded,
channels-last, one CUDA graph per shape), and the same folded bf16 network
through ``torch.compile`` (inductor, ``default`` and ``reduce-overhead``
modes; no max-autotune), the candidates for a compiled GPU backend. Each
candidate's largest output difference from fp32 and its compile time are
printed too. Forward only, on a batch already on the device; then the whole
Detector (post-processing included). ``--device cpu --size 128 --batches 1 2``
is a dry run of the script itself.
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from model.backends.eager import EagerBackend
from model.backends.fused import FusedBackend, fold_batchnorm
from model.detector import Detector
from model.weights import load_checkpoint
from tools import data


class PlainBf16:
    """The network cast to bf16 and nothing else: the baseline of the GPU targets."""

    def __init__(self, checkpoint, device: torch.device) -> None:
        self.network = checkpoint.build().to(device, torch.bfloat16)

    @torch.inference_mode()
    def __call__(self, batch: torch.Tensor):
        return self.network(batch.to(torch.bfloat16))


class CompiledBf16:
    """The folded, channels-last bf16 network through ``torch.compile`` in one mode."""

    def __init__(self, checkpoint, device: torch.device, mode: str) -> None:
        network = fold_batchnorm(checkpoint.build()).to(
            device, torch.bfloat16, memory_format=torch.channels_last
        )
        self.network = torch.compile(network, mode=mode, dynamic=False)

    @torch.inference_mode()
    def __call__(self, batch: torch.Tensor):
        batch = batch.to(torch.bfloat16).contiguous(memory_format=torch.channels_last)
        return tuple(out.float() for out in self.network(batch))


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def images_per_second(backend, batch: torch.Tensor, seconds: float) -> float:
    for _ in range(3):
        backend(batch)
    synchronize(batch.device)
    runs, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        backend(batch)
        runs += 1
    synchronize(batch.device)
    return runs * batch.shape[0] / (time.perf_counter() - start)


def largest_difference(backend, reference, batch: torch.Tensor) -> float:
    """Largest absolute difference of the logits from fp32's."""
    expected = reference(batch)[1].float()
    return (backend(batch)[1].float() - expected).abs().max().item()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--weights", help="a checkpoint (default: EXTD_64.pth of the found data)")
    parser.add_argument("--size", type=int, default=640)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8, 32, 64])
    parser.add_argument("--seconds", type=float, default=2.0, help="timing per cell")
    parser.add_argument("--device", default="cuda")
    parser.add_argument(
        "--compile-modes",
        nargs="*",
        default=["default", "reduce-overhead"],
        help="torch.compile modes to time (none: skip them)",
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.benchmark = True
    device = torch.device(args.device)
    checkpoint = load_checkpoint(args.weights or data.require("weights", "EXTD_64.pth"))
    reference = EagerBackend(checkpoint, device)
    backends = [
        ("eager fp32", reference),
        ("eager bf16", PlainBf16(checkpoint, device)),
        ("torch-bf16", FusedBackend(checkpoint, device, dtype=torch.bfloat16)),
    ] + [(f"compile {mode}", CompiledBf16(checkpoint, device, mode)) for mode in args.compile_modes]
    name = torch.cuda.get_device_name() if device.type == "cuda" else "CPU"
    print(f"{name}, torch {torch.__version__}, {checkpoint.variant}, {args.size}x{args.size}")
    probe = torch.randn(args.batches[-1], 3, args.size, args.size, device=device) * 60
    for label, backend in backends[1:]:
        start = time.perf_counter()
        difference = largest_difference(backend, reference, probe)
        synchronize(device)
        print(
            f"{label}: first call {time.perf_counter() - start:.1f} s (compiling, for compiled "
            f"rows), largest logit difference from fp32 {difference:.3f}",
            flush=True,
        )
    print("forward only, images/s")
    print(
        f"{'batch':>6s} "
        + " ".join(f"{label:>20s}" for label, _ in backends)
        + "  best vs eager bf16"
    )
    results = []
    for size in args.batches:
        batch = torch.randn(size, 3, args.size, args.size, device=device) * 60
        row = {"batch": size}
        for label, backend in backends:
            row[label] = round(images_per_second(backend, batch, args.seconds), 1)
        results.append(row)
        cells = " ".join(f"{row[label]:20.1f}" for label, _ in backends)
        best = max(row[label] for label, _ in backends[2:])
        print(f"{size:6d} {cells}  {best / row['eager bf16']:.2f}x", flush=True)
    detector_batch = args.batches[-1]
    detector = Detector(checkpoint, device=device, backend="torch-bf16", batch_size=detector_batch)
    pixels = (torch.rand(args.size, args.size, 3) * 255).to(torch.uint8).numpy()
    images = [pixels] * detector_batch
    for _ in range(3):  # the third sighting of a shape captures its graph
        detector.detect(images, scale=1.0, score_threshold=0.5)
    synchronize(device)
    start, runs = time.perf_counter(), 0
    while time.perf_counter() - start < args.seconds:
        detector.detect(images, scale=1.0, score_threshold=0.5)
        runs += 1
    detector_rate = runs * len(images) / (time.perf_counter() - start)
    print(
        f"Detector (uint8 upload, forward, decode, NMS), batch {detector_batch}: "
        f"{detector_rate:.1f} images/s"
    )
    if device.type == "cuda":
        print(f"peak GPU memory: {torch.cuda.max_memory_allocated() / 2**30:.2f} GiB")
    if args.json:
        print(json.dumps({"forward": results, "detector_images_per_s": round(detector_rate, 1)}))


if __name__ == "__main__":
    main()
