"""The instruction set the CPU backends run on here, and which backend is fastest on each.

Whether int8 or bf16 pays depends on the CPU: int8 dot products (AVX-512
VNNI, AMX; emulated with AVX2 multiply-adds before them) and bf16 ones
(AVX-512 BF16, AMX). oneDNN, under OpenVINO, picks its kernels by the
widest set the CPU has, capped by ``ONEDNN_MAX_CPU_ISA``; this module reads
both the same way, so ``bench/cpu_backends.py --isas`` measures the older
sets on a newer CPU and ``auto`` decides as it would on one of them.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

# Oldest first, each with the CPU flags (as Linux lists them) that make it and the name
# ONEDNN_MAX_CPU_ISA gives it.
INSTRUCTION_SETS = {
    "avx2": ({"avx2", "fma"}, "AVX2"),
    "avx512": ({"avx512f", "avx512bw", "avx512vl", "avx512dq"}, "AVX512_CORE"),
    "avx512_vnni": ({"avx512_vnni"}, "AVX512_CORE_VNNI"),
    "avx512_bf16": ({"avx512_bf16"}, "AVX512_CORE_BF16"),
    "amx": ({"amx_tile", "amx_int8", "amx_bf16"}, "AVX512_CORE_AMX"),
}
BF16_NATIVE = ("avx512_bf16", "amx")
# The CPU backends fastest first on each set, as bench/cpu_backends.py measured them (EXTD-32
# to 64 at 1024x768, one thread; docs/performance.md): int8 led fp32 by 1.5x on an AVX2-only
# AMD EPYC, and bf16 by 1.2 to 1.6x on an AMD EPYC with AVX-512 BF16/VNNI and on an Intel Xeon
# with AMX; bf16 comes next where the CPU has bf16 instructions (elsewhere it is emulated and
# slower than fp32). ``auto`` takes the first that keeps fp32's accuracy.
FASTEST_FIRST = {
    "avx2": ("openvino-int8", "openvino"),
    "avx512": ("openvino-int8", "openvino"),
    "avx512_vnni": ("openvino-int8", "openvino"),
    "avx512_bf16": ("openvino-int8", "openvino-bf16", "openvino"),
    "amx": ("openvino-int8", "openvino-bf16", "openvino"),
}
CPUINFO = Path("/proc/cpuinfo")


@functools.cache
def instruction_set() -> str | None:
    """The widest of :data:`INSTRUCTION_SETS` the CPU has and ``ONEDNN_MAX_CPU_ISA`` allows,
    or None where that cannot be read (not Linux, not x86, older than AVX2)."""
    flags = _cpu_flags()
    cap = os.environ.get("ONEDNN_MAX_CPU_ISA", "").upper()
    found = None
    for name, (needs, onednn) in INSTRUCTION_SETS.items():
        if not needs <= flags:
            break
        found = name
        if onednn == cap:
            break
    return found


def _cpu_flags() -> set[str]:
    try:
        text = CPUINFO.read_text()
    except OSError:
        return set()
    line = next((line for line in text.splitlines() if line.startswith("flags")), "")
    return set(line.partition(":")[2].split())
