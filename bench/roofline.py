"""How far each CPU backend is from the hardware: EXTD's work and traffic against the peaks.

    python bench/roofline.py                        # EXTD-32, 48, 64 at 1024x768, one thread
    ONEDNN_MAX_CPU_ISA=AVX2 python bench/roofline.py --widths 64   # as an AVX2 CPU

Per convolution (every use of the reused stage counted): multiply-accumulates,
and the bytes of its input and output activations at each backend's precision
(fp32 4, bf16 2, int8 1; weights are under a megabyte). The lower bound of a
backend is, layer by layer, the larger of its MACs at the instruction set's
peak and its bytes at the memory bandwidth this process measures on one
thread (the faster of copying 48 and 512 MB), summed. The peaks are nominal, per core and cycle
(dense: 1x1 and full 3x3 convolutions; depthwise convolutions run on vector
units with every set, AMX included) at the clock /proc/cpuinfo reports.
Measured: the backend's forward pass alone, one thread, median of ``--runs``
after warm-up; "of bound" is how many times the bound that is.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from model.backends import create_backend
from model.backends.cpu import instruction_set
from model.checkpoint import read_checkpoint
from model.options import RuntimeOptions
from model.runtime import tune_allocator
from tools import data

# Nominal multiply-accumulates per core and cycle: (dense fp32, dense bf16, dense int8,
# depthwise). bf16 without bf16 instructions runs fp32; depthwise runs on the vector units.
PEAKS = {
    "avx2": {"f32": 16, "bf16": 16, "int8": 32, "depthwise": 16},
    "avx512": {"f32": 32, "bf16": 32, "int8": 64, "depthwise": 32},
    "avx512_vnni": {"f32": 32, "bf16": 32, "int8": 128, "depthwise": 32},
    "avx512_bf16": {"f32": 32, "bf16": 64, "int8": 128, "depthwise": 32},
    "amx": {"f32": 32, "bf16": 512, "int8": 1024, "depthwise": 32},
}
BACKENDS = {"openvino": "f32", "openvino-bf16": "bf16", "openvino-int8": "int8"}
BYTES = {"f32": 4, "bf16": 2, "int8": 1}


@dataclass(frozen=True)
class Layer:
    macs: int
    elements: int  # input plus output activations
    depthwise: bool


def layers(width: int, size: tuple[int, int]) -> list[Layer]:
    """Every convolution the network runs on one ``(height, width)`` image."""
    network = read_checkpoint(data.require("weights", f"EXTD_{width}.pth")).build()
    found: list[Layer] = []

    def count(conv: nn.Conv2d, inputs: tuple[torch.Tensor], output: torch.Tensor) -> None:
        kernel = conv.kernel_size[0] * conv.kernel_size[1]
        macs = output.numel() * conv.in_channels // conv.groups * kernel
        depthwise = conv.groups > 1 and conv.groups == conv.in_channels
        found.append(Layer(macs, inputs[0].numel() + output.numel(), depthwise))

    for module in network.modules():
        if isinstance(module, nn.Conv2d):
            module.register_forward_hook(count)
    with torch.no_grad():
        network(torch.zeros(1, 3, *size))
    return found


def bandwidth_gb_s(megabytes: int) -> float:
    """One thread copying ``megabytes``: what a pass that streams its activations gets."""
    source = np.ones(megabytes * 2**20 // 8)
    target = np.empty_like(source)
    best = min(_timed(lambda: np.copyto(target, source)) for _ in range(5))
    return 2 * source.nbytes / best / 1e9


def clock_hz() -> float:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("cpu MHz"):
            return float(line.split(":")[1]) * 1e6
    raise SystemExit("no clock in /proc/cpuinfo")


def bounds_ms(found: list[Layer], precision: str, isa: str, gb_s: float) -> tuple[float, ...]:
    """Compute bound, memory bound and their layer-by-layer maximum, summed."""
    peaks, hz, size = PEAKS[isa], clock_hz(), BYTES[precision]
    compute = [
        layer.macs / (peaks["depthwise" if layer.depthwise else precision] * hz) for layer in found
    ]
    memory = [layer.elements * size / (gb_s * 1e9) for layer in found]
    both = [max(c, m) for c, m in zip(compute, memory, strict=True)]
    return tuple(1000 * sum(part) for part in (compute, memory, both))


def _timed(work) -> float:
    start = time.perf_counter()
    work()
    return time.perf_counter() - start


def measured_ms(width: int, backend: str, size: tuple[int, int], runs: int) -> tuple[str, float]:
    """The backend's forward pass on one image, and what it actually ran as."""
    checkpoint = read_checkpoint(data.require("weights", f"EXTD_{width}.pth"))
    runtime = RuntimeOptions.from_environment(os.environ)
    model = create_backend(backend, checkpoint, torch.device("cpu"), runtime)
    batch = torch.randn(1, 3, *size) * 50
    for _ in range(2):
        model(batch)
    return model.name, statistics.median(_timed(lambda: model(batch)) for _ in range(runs)) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--widths", nargs="+", type=int, default=[32, 48, 64])
    parser.add_argument("--size", default="1024x768", help="WIDTHxHEIGHT")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    cols, rows = (int(v) for v in args.size.split("x"))
    tune_allocator()
    torch.set_num_threads(1)
    isa = instruction_set() or "avx2"
    # A 48 MB map (64 channels at stride 2 of 1024x768, fp32) may stay in the last-level
    # cache; 512 MB does not. The bound takes the faster.
    cached, memory = bandwidth_gb_s(48), bandwidth_gb_s(512)
    gb_s = max(cached, memory)
    print(
        f"## {isa} at {clock_hz() / 1e9:.2f} GHz (nominal), one thread, {args.size}: copy "
        f"bandwidth {cached:.1f} GB/s (48 MB), {memory:.1f} GB/s (512 MB); peak MACs per "
        f"cycle {PEAKS[isa]}"
    )
    print(
        "| width | GMACs (depthwise) | backend | MB moved | compute bound ms "
        "| memory bound ms | bound ms | measured ms | of bound |"
    )
    print("| --- " * 9 + "|", flush=True)
    for width in args.widths:
        found = layers(width, (rows, cols))
        macs = sum(layer.macs for layer in found)
        depthwise = sum(layer.macs for layer in found if layer.depthwise)
        for backend in BACKENDS:
            name, ms = measured_ms(width, backend, (rows, cols), args.runs)
            precision = BACKENDS[name]  # bf16 without bf16 instructions runs fp32
            moved = sum(layer.elements for layer in found) * BYTES[precision] / 1e6
            compute, memory, bound = bounds_ms(found, precision, isa, gb_s)
            print(
                f"| {width} | {macs / 1e9:.2f} ({depthwise / 1e9:.2f}) | {name} | {moved:.0f} "
                f"| {compute:.0f} | {memory:.0f} | {bound:.0f} | {ms:.0f} | {ms / bound:.1f}x |",
                flush=True,
            )


if __name__ == "__main__":
    main()
