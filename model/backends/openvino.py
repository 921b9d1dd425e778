"""OpenVINO on the CPU: fp32 (``openvino``), bf16 (``openvino-bf16``, on CPUs with
AMX or AVX-512 BF16; fp32 elsewhere) or int8 (``openvino-int8``, quantized with NNCF,
see :mod:`model.backends.int8`).

The network is converted once per checkpoint (from the eval-mode module,
with dynamic batch and image size) and the IR is cached on disk under the
checkpoint's content hash; compiled models go to OpenVINO's own cache.
Each model is compiled once, for latency: one call on all threads. Parallel
streams that share a batch gained at most 4 % on 2 cores, and each stream
keeps intermediate buffers of its own (about 1.1 GB per megapixel of input in
fp32), so ordinary mixed traffic held two sets at once (5.7 GB).
"""

from __future__ import annotations

import functools
import logging
import os
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from model.backends.cpu import BF16_NATIVE, instruction_set
from model.backends.int8 import RECIPE, CalibrationSet, Recipe, cache_key, quantize
from model.checkpoint import Checkpoint
from model.errors import BackendError
from model.options import RuntimeOptions

log = logging.getLogger(__name__)

# Conversion traces the network once; the size only has to be valid.
_TRACE_SIZE = (1, 3, 128, 128)


def _import_openvino():
    try:
        import openvino
    except ImportError as error:
        raise BackendError(
            "the openvino backend needs: pip install 'extd-face[openvino]'"
        ) from error
    return openvino


@functools.cache
def _core():
    """The process's one OpenVINO core, never released.

    OpenVINO's CPU plugin gives the thread that creates it an alternate
    signal stack and unmaps it when the plugin goes away. With a core per
    model, released out of order, the thread kept a stack that no longer
    existed and the next signal it handled (a DataLoader worker's SIGCHLD)
    crashed the process.
    """
    return _import_openvino().Core()


def supports_bf16() -> bool:
    """Whether this CPU has bf16 instructions (OpenVINO reports them even where
    ``ONEDNN_MAX_CPU_ISA`` keeps oneDNN from using them, and then runs reference code)."""
    isa = instruction_set()
    if isa is not None:
        return isa in BF16_NATIVE
    return "BF16" in _core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")


def _cached_ir(cache_dir: Path, name: str, build: Callable[[], Any]) -> Path:
    """``<cache_dir>/openvino/<name>.xml``, built and saved (the .bin first) on first use."""
    openvino = _import_openvino()
    folder = cache_dir / "openvino"
    xml = folder / f"{name}.xml"
    if xml.is_file():
        return xml
    folder.mkdir(parents=True, exist_ok=True)
    model = build()
    with tempfile.TemporaryDirectory(dir=folder) as scratch:
        openvino.save_model(model, Path(scratch) / "model.xml", compress_to_fp16=False)
        os.replace(Path(scratch) / "model.bin", xml.with_suffix(".bin"))
        os.replace(Path(scratch) / "model.xml", xml)
    return xml


def _fp32_ir(checkpoint: Checkpoint, cache_dir: Path) -> Path:
    """The network converted once per checkpoint, with dynamic batch and image size."""

    def convert() -> Any:
        log.info("converting %s to OpenVINO IR", checkpoint.variant)
        network = checkpoint.build()  # eval mode: batch norm must use its running statistics
        with torch.no_grad():
            return _import_openvino().convert_model(
                network, example_input=torch.zeros(_TRACE_SIZE), input=[(-1, 3, -1, -1)]
            )

    return _cached_ir(cache_dir, checkpoint.sha256, convert)


def _int8_ir(checkpoint: Checkpoint, runtime: RuntimeOptions, recipe: Recipe) -> Path:
    """The network quantized once per checkpoint, calibration set and recipe."""
    calibration = CalibrationSet.from_options(runtime)

    def build() -> Any:
        model = _core().read_model(_fp32_ir(checkpoint, runtime.cache_dir))
        return quantize(model, calibration, recipe)

    key = cache_key(checkpoint, calibration, recipe)
    return _cached_ir(runtime.cache_dir, f"int8-{key}", build)


# OpenVINO 2026.4's int8 kernels read memory they never wrote (outputs off by whole units,
# different on every call; a crash with NNCF's mixed preset) where the coarsest feature map
# is 1x1: inputs no larger than this on both sides. Served inputs are at least one size
# bucket (128) on each side; smaller ones (exact scales of tiny photos) run in fp32.
INT8_MIN_SIDE = 64


class OpenVinoBackend:
    def __init__(
        self,
        checkpoint: Checkpoint,
        device: torch.device,
        runtime: RuntimeOptions,
        *,
        precision: str = "f32",
        recipe: Recipe = RECIPE,
    ) -> None:
        """``recipe``: how int8 is quantized (scripts/int8.py compares others)."""
        if device.type != "cpu":
            raise BackendError(f"the openvino backend runs on the CPU, not {device}")
        if precision == "bf16" and not supports_bf16():
            log.info("this CPU has no bf16 instructions: OpenVINO runs fp32")
            precision = "f32"
        self.name = {"f32": "openvino", "bf16": "openvino-bf16", "int8": "openvino-int8"}[precision]
        self.precision = precision
        self.device = device
        core = _core()
        int8 = precision == "int8"
        model = core.read_model(
            _int8_ir(checkpoint, runtime, recipe)
            if int8
            else _fp32_ir(checkpoint, runtime.cache_dir)
        )
        config = {
            "CACHE_DIR": str(runtime.cache_dir / "openvino-compiled"),
            # int8 models keep a few layers in float: those run fp32.
            "INFERENCE_PRECISION_HINT": "f32" if int8 else precision,
            "INFERENCE_NUM_THREADS": torch.get_num_threads(),
            "PERFORMANCE_HINT": "LATENCY",
        }
        self._compiled = core.compile_model(model, "CPU", config)
        self._request = self._compiled.create_infer_request()
        self._lock = threading.Lock()
        self._float: OpenVinoBackend | None = None
        self._build_float = (
            (lambda: OpenVinoBackend(checkpoint, device, runtime, precision="f32"))
            if int8
            else None
        )

    def release_memory(self) -> None:
        """OpenVINO keeps intermediate buffers sized for the largest shape it has run
        (about 1.1 GB per megapixel of input in fp32) and a cache entry per shape; free them."""
        with self._lock:
            self._compiled.release_memory()
            fallback = self._float
        if fallback is not None:
            fallback.release_memory()

    def __call__(self, batch: Tensor) -> tuple[Tensor, Tensor]:
        if self._build_float is not None and max(batch.shape[-2:]) <= INT8_MIN_SIDE:
            with self._lock:
                self._float = self._float or self._build_float()
            return self._float(batch)
        with self._lock:
            self._request.infer([batch.contiguous().numpy()])
            return _outputs(self._request)


def _outputs(request) -> tuple[Tensor, Tensor]:
    """A finished request's (offsets, logits), copied out of its reusable buffers."""
    offsets, logits = (torch.from_numpy(request.get_output_tensor(i).data.copy()) for i in range(2))
    return offsets, logits
