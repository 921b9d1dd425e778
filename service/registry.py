"""The loaded models: one Detector per checkpoint file of the weights folder.

Models are named after their file (``extd-64.safetensors`` -> ``extd-64``).
A new or changed file is validated (strict load, a finite forward pass)
before it replaces anything; a file that fails is refused and the old model
keeps serving. Queued work holds its Detector, so a swap drops nothing.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from model.checkpoint import PROJECT_SUFFIX, RELEASE_SUFFIXES, read_checkpoint
from model.detector import Detector
from model.errors import CheckpointError, ExtdError
from model.inputs import prepare
from model.options import PostprocessOptions, ScalePolicy
from model.weights import DEFAULT_MODEL

log = logging.getLogger(__name__)

CHECKPOINT_SUFFIXES = (PROJECT_SUFFIX, *RELEASE_SUFFIXES)


@dataclass(frozen=True)
class ModelDescription:
    """What the service says of a loaded model (``/v1/models``): plain values, so it crosses
    processes."""

    name: str
    variant: str
    parameters: int
    source: str
    sha256: str
    file: str
    backend: str
    device: str
    training: dict[str, Any]


@dataclass(frozen=True)
class LoadedModel:
    """A serving Detector with the file it came from, so a changed file can be noticed."""

    name: str
    detector: Detector
    path: Path
    parameters: int
    signature: tuple[int, int]

    @property
    def variant(self) -> str:
        return self.detector.variant.name

    @property
    def sha256(self) -> str:
        return self.detector.checkpoint.sha256

    @property
    def backend(self) -> str:
        return self.detector.backend.name

    @property
    def device(self) -> str:
        return str(self.detector.device)

    @property
    def description(self) -> ModelDescription:
        checkpoint = self.detector.checkpoint
        return ModelDescription(
            name=self.name,
            variant=self.variant,
            parameters=self.parameters,
            source=checkpoint.source,
            sha256=self.sha256,
            file=self.path.name,
            backend=self.backend,
            device=self.device,
            training=checkpoint.training,
        )


@dataclass(frozen=True)
class ReloadReport:
    """What one scan of the weights folder changed, as the reload endpoint reports it."""

    loaded: list[str]
    refused: dict[str, str]
    removed: list[str]


def _signature(path: Path) -> tuple[int, int]:
    stat = path.stat()
    return stat.st_mtime_ns, stat.st_size


def warm_up(detector: Detector, sizes: Sequence[tuple[int, int]]) -> set[tuple[int, int]]:
    """A forward pass at the input shape of each ``(width, height)`` image size, with the
    service's default policy, so requests of those sizes pay no first-sight set-up cost.
    Returns the input shapes run."""
    shapes = set()
    for width, height in sizes:
        item = prepare(
            np.zeros((height, width, 3), np.uint8), detector.plan((height, width), ScalePolicy())
        )
        detector.run([item], [PostprocessOptions()])
        shapes.add(item.input_shape)
    return shapes


class ModelRegistry:
    """Thread-safe name -> :class:`LoadedModel` map over a weights folder."""

    def __init__(
        self,
        directory: Path,
        build: Callable[[object], Detector],
        *,
        default: str | None = None,
        warm_sizes: Sequence[tuple[int, int]] = (),
        on_change: Callable[[list[LoadedModel], list[LoadedModel], dict[str, str]], None]
        | None = None,
    ) -> None:
        self.directory = directory
        self._build = build
        self._requested_default = default
        self.warm_sizes = tuple(warm_sizes)
        self.warm_shapes: set[tuple[int, int]] = set()
        self._on_change = on_change
        self._models: dict[str, LoadedModel] = {}
        self._refused: dict[Path, tuple[int, int]] = {}
        self._chosen_default: str | None = None
        # Loaded models whose file is gone: the default keeps serving from memory.
        self.missing_files: set[str] = set()
        self._lock = threading.Lock()

    def get(self, name: str) -> LoadedModel | None:
        return self._models.get(name)

    def all(self) -> list[LoadedModel]:
        return sorted(self._models.values(), key=lambda m: m.name)

    def describe(self) -> list[ModelDescription]:
        return [model.description for model in self.all()]

    @property
    def default_name(self) -> str | None:
        """The configured default, else the one chosen when the first models loaded
        (``extd-64`` if there, else the first by name). It never changes by itself."""
        return self._requested_default or self._chosen_default

    def checkpoint_files(self) -> dict[str, Path]:
        """Model name -> file; a project checkpoint wins over a release file of the same name."""
        files: dict[str, Path] = {}
        if not self.directory.is_dir():
            return files
        for path in sorted(self.directory.iterdir()):
            if path.suffix not in CHECKPOINT_SUFFIXES or path.name.startswith("."):
                continue
            if path.stem in files and path.suffix != PROJECT_SUFFIX:
                continue
            files[path.stem] = path
        return files

    def _load(self, name: str, path: Path, signature: tuple[int, int], warm: bool) -> LoadedModel:
        checkpoint = read_checkpoint(path)
        detector = self._build(checkpoint)
        if warm and name == self.default_name:
            self.warm_shapes |= warm_up(detector, self.warm_sizes)
        side = detector.bucket_step  # the smallest input served (int8 runs tinier ones in fp32)
        with torch.inference_mode():
            offsets, logits = detector.backend(torch.zeros(1, 3, side, side))
        if not (torch.isfinite(offsets).all() and torch.isfinite(logits).all()):
            raise CheckpointError(f"{path.name}: the network produces non-finite outputs")
        return LoadedModel(name, detector, path, checkpoint.num_parameters, signature)

    def warm(self) -> None:
        """Warm the default model at :attr:`warm_sizes`. Only that one: a warm shape keeps
        its buffers (about 1.1 GB per megapixel of input on OpenVINO fp32), and the other
        models pay their first-sight cost (about 0.5 s) on their first request instead."""
        default = self.get(self.default_name or "")
        if default is not None:
            self.warm_shapes |= warm_up(default.detector, self.warm_sizes)

    def refresh(self, *, warm: bool = True) -> ReloadReport:
        """Load new or changed files (warmed before they serve, unless ``warm`` is false),
        drop models whose file is gone."""
        with self._lock:
            default = self.default_name
            files = self.checkpoint_files()
            loaded, refused, added, dropped = [], {}, [], []
            for name, path in files.items():
                try:
                    signature = _signature(path)
                except FileNotFoundError:
                    continue
                current = self._models.get(name)
                if current and current.path == path and current.signature == signature:
                    continue
                if self._refused.get(path) == signature:
                    continue
                try:
                    model = self._load(name, path, signature, warm)
                # OpenVINO and torch raise RuntimeError on a network they cannot compile or run.
                except (ExtdError, OSError, RuntimeError) as error:
                    self._refused[path] = signature
                    refused[name] = str(error)
                    log.warning("refused checkpoint %s: %s", path, error)
                    continue
                self._refused.pop(path, None)
                if current:
                    dropped.append(current)
                    if current.variant != model.variant:
                        log.warning(
                            "model %s changed variant: %s -> %s (%s was replaced)",
                            name,
                            current.variant,
                            model.variant,
                            path.name,
                        )
                self._models[name] = model
                added.append(model)
                loaded.append(name)
                log.info("loaded model %s from %s (%s)", name, path, model.variant)
            if self._chosen_default is None and self._models:
                self._chosen_default = (
                    DEFAULT_MODEL if DEFAULT_MODEL in self._models else min(self._models)
                )
            missing_before = set(self.missing_files)
            self.missing_files -= set(files)
            removed = []
            for name in [n for n in self._models if n not in files]:
                if name == default:
                    if name not in self.missing_files:
                        self.missing_files.add(name)
                        log.warning(
                            "the file of the default model %s is gone: it keeps serving from "
                            "memory until a file replaces it",
                            name,
                        )
                    continue
                removed.append(name)
                dropped.append(self._models.pop(name))
                log.info("unloaded model %s: its file is gone", name)
        if self._on_change and (
            added or dropped or refused or missing_before != self.missing_files
        ):
            self._on_change(added, dropped, refused)
        return ReloadReport(loaded, refused, removed)

    def watch(self, interval_s: float, stop: threading.Event) -> threading.Thread:
        """Poll the folder in a daemon thread until ``stop`` is set."""

        def loop() -> None:
            while not stop.wait(interval_s):
                try:
                    self.refresh()
                except Exception:  # the watcher must outlive any one bad file
                    log.exception("weights folder scan failed")

        thread = threading.Thread(target=loop, name="weights-watcher", daemon=True)
        thread.start()
        return thread
