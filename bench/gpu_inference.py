"""GPU forward throughput by batch size, side by side with plain eager, in one run.

    python bench/gpu_inference.py --weights ../shared/weights/EXTD_64.pth --size 640

Rows: eager fp32 (TF32 off, the reference), plain eager bf16 (the network
cast to bf16, nothing else), and the ``torch-bf16`` backend (batch norm
folded, channels-last, one CUDA graph per shape). Forward only, on a batch
already on the GPU; then the whole Detector (post-processing included).
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from model.backends.eager import EagerBackend
from model.backends.fused import FusedBackend
from model.detector import Detector
from model.weights import load_checkpoint


class PlainBf16:
    """The network cast to bf16 and nothing else: the baseline of the GPU targets."""

    name = "eager bf16"

    def __init__(self, checkpoint, device: torch.device) -> None:
        self.network = checkpoint.build().to(device, torch.bfloat16)

    @torch.inference_mode()
    def __call__(self, batch: torch.Tensor):
        return self.network(batch.to(torch.bfloat16))


def images_per_second(backend, batch: torch.Tensor, seconds: float) -> float:
    for _ in range(3):
        backend(batch)
    torch.cuda.synchronize()
    runs, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        backend(batch)
        runs += 1
    torch.cuda.synchronize()
    return runs * batch.shape[0] / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--weights", default="../shared/weights/EXTD_64.pth")
    parser.add_argument("--size", type=int, default=640)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8, 32, 64])
    parser.add_argument("--seconds", type=float, default=2.0, help="timing per cell")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.benchmark = True
    device = torch.device("cuda")
    checkpoint = load_checkpoint(args.weights)
    backends = [
        ("eager fp32", EagerBackend(checkpoint, device)),
        ("eager bf16", PlainBf16(checkpoint, device)),
        ("torch-bf16", FusedBackend(checkpoint, device, dtype=torch.bfloat16)),
    ]
    print(
        f"{torch.cuda.get_device_name()}, torch {torch.__version__}, "
        f"{checkpoint.variant}, {args.size}x{args.size}"
    )
    print("forward only, images/s")
    print(
        f"{'batch':>6s} "
        + " ".join(f"{name:>12s}" for name, _ in backends)
        + "  speed-up vs eager bf16"
    )
    results = []
    for size in args.batches:
        batch = torch.randn(size, 3, args.size, args.size, device=device) * 60
        row = {"batch": size}
        for name, backend in backends:
            row[name] = round(images_per_second(backend, batch, args.seconds), 1)
        results.append(row)
        cells = " ".join(f"{row[name]:12.1f}" for name, _ in backends)
        print(f"{size:6d} {cells}  {row['torch-bf16'] / row['eager bf16']:.2f}x", flush=True)
    detector = Detector(checkpoint, device=device, backend="torch-bf16", batch_size=64)
    pixels = (torch.rand(args.size, args.size, 3) * 255).to(torch.uint8).numpy()
    images = [pixels] * 64
    for _ in range(3):  # the third sighting of a shape captures its graph
        detector.detect(images, scale=1.0, score_threshold=0.5)
    torch.cuda.synchronize()
    start, runs = time.perf_counter(), 0
    while time.perf_counter() - start < args.seconds:
        detector.detect(images, scale=1.0, score_threshold=0.5)
        runs += 1
    detector_rate = runs * len(images) / (time.perf_counter() - start)
    print(f"Detector (uint8 upload, forward, decode, NMS), batch 64: {detector_rate:.1f} images/s")
    print(f"peak GPU memory: {torch.cuda.max_memory_allocated() / 2**30:.2f} GiB")
    if args.json:
        print(json.dumps({"forward": results, "detector_images_per_s": round(detector_rate, 1)}))


if __name__ == "__main__":
    main()
