"""What each Ray actor of ``python -m model batch`` runs: one Detector, built once from the
command's flags, over batches of photo paths (Arrow tables in, Arrow tables out)."""

from __future__ import annotations

import argparse
from dataclasses import asdict

import numpy as np
import pyarrow as pa
import torch

from model.checkpoint import Checkpoint
from model.commands.anonymize import hide_photo, photo_options
from model.commands.arguments import build_detector, options_from
from model.commands.batch.files import PhotoSource
from model.errors import ImageError
from model.images import Source, image_name
from model.inputs import PreparedImage
from model.options import PostprocessOptions, ScalePolicy

FACE = pa.struct([("box", pa.list_(pa.float32())), ("score", pa.float32())])
# One row per photo; a photo that could not be read has its error and nulls.
DETECTION = pa.schema(
    [
        ("path", pa.string()),
        ("width", pa.int32()),
        ("height", pa.int32()),
        ("input_size", pa.list_(pa.int32())),  # width, height the network saw (single scale)
        ("faces", pa.list_(FACE)),
        ("error", pa.string()),
    ]
)
HIDING = pa.schema([("path", pa.string()), ("faces", pa.int32()), ("error", pa.string())])


class Worker:
    """One per actor: the Detector the plain command would build, on the actor's device and
    threads."""

    def __init__(
        self, args: argparse.Namespace, checkpoint: Checkpoint, source: PhotoSource
    ) -> None:
        # Ray sets OMP_NUM_THREADS to the actor's CPUs; the backends size their pools from
        # torch's count, so it is set here whatever the environment says.
        torch.set_num_threads(max(1, int(args.num_cpus)))
        device = "cuda" if args.num_gpus else args.device
        self.detector = build_detector(args, checkpoint, device=device)
        self.source = source
        self.args = args


def _message(error: ImageError, path: str, data: Source | None) -> str:
    """The error as the input path says it, naming the photo's path rather than its bytes."""
    text = str(error)
    return text.replace(image_name(data), path, 1) if isinstance(data, bytes) else text


class DetectPhotos(Worker):
    """``batch detect``: the faces of each photo, or why it has none."""

    def __init__(
        self, args: argparse.Namespace, checkpoint: Checkpoint, source: PhotoSource
    ) -> None:
        super().__init__(args, checkpoint, source)
        self.options = options_from(PostprocessOptions, args)
        self.policy = options_from(ScalePolicy, args)
        self.paper = args.protocol == "paper"

    def __call__(self, batch: pa.Table) -> pa.Table:
        paths = batch.column("path").to_pylist()
        items: dict[int, PreparedImage] = {}
        errors: dict[int, str] = {}
        for index, path in enumerate(paths):
            data = None
            try:
                data = self.source.read(path)
                items[index] = self.detector.load(data, self.policy, full_size=self.paper)
            except ImageError as error:
                errors[index] = _message(error, path, data)
        faces = dict(zip(items, self._detect(list(items.values())), strict=True))
        rows = [
            self._row(path, items[i], faces[i])
            if i in items
            else {"path": path, "error": errors[i]}
            for i, path in enumerate(paths)
        ]
        return pa.Table.from_pylist(rows, schema=DETECTION)

    def _row(self, path: str, item: PreparedImage, faces: np.ndarray) -> dict:
        height, width = item.plan.size
        return {
            "path": path,
            "width": width,
            "height": height,
            "input_size": None if self.paper else list(item.plan.resized[::-1]),
            "faces": [{"box": face[:4].tolist(), "score": float(face[4])} for face in faces],
        }

    def _detect(self, items: list[PreparedImage]) -> list[np.ndarray]:
        """As ``python -m model detect`` runs them: single scale, or the paper's several
        scales and a flip from the full-size pixels."""
        if self.paper:
            pixels = [item.pixels.numpy() for item in items]
            return self.detector.detect(pixels, **asdict(self.options), protocol="paper")
        return self.detector.run(items, [self.options] * len(items))


class HidePhotos(Worker):
    """``batch anonymize``: each photo hidden and written; its faces, or why it was not."""

    def __init__(
        self, args: argparse.Namespace, checkpoint: Checkpoint, source: PhotoSource
    ) -> None:
        super().__init__(args, checkpoint, source)
        self.options, self.policy, self.hiding = photo_options(args)

    def __call__(self, batch: pa.Table) -> pa.Table:
        paths = batch.column("path").to_pylist()
        faces: list[int | None] = []
        errors: list[str | None] = []
        for path in paths:
            data = None
            try:
                data = self.source.read(path)
                found = hide_photo(
                    data, self.source.relative(path), self.detector,
                    self.options, self.policy, self.hiding, self.args,
                )  # fmt: skip
            except ImageError as error:
                faces.append(None)
                errors.append(_message(error, path, data))
            else:
                faces.append(found)
                errors.append(None)
        return pa.table({"path": paths, "faces": faces, "error": errors}, schema=HIDING)
