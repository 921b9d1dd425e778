"""The batched face detector: images in, faces in original pixel coordinates out.

Images are resized by a scale policy, grouped by network input size and run
one batch per group. With a fixed ``scale`` every image runs at exactly its
scaled size (the release's behaviour, bit for bit); otherwise images are
padded to size buckets (multiples of ``bucket_step``) so that similar images
share a batch. The bucket depends only on the image itself, so a result
never depends on which other images were in the call.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch import Tensor

from model.anchors import anchor_grid
from model.backends import Backend, create_backend
from model.boxes import face_sizes
from model.checkpoint import Checkpoint
from model.conventions import MIN_FACE_TOLERANCE
from model.errors import OptionsError
from model.images import ImageInput, Size, Source, open_image, to_rgb_array
from model.inputs import InputPlan, PreparedImage, load, network_batch, plan_input, prepare
from model.options import RELEASE, DetectorOptions, PostprocessOptions, RuntimeOptions, ScalePolicy
from model.paper_protocol import Pass, merge_found, paper_passes
from model.postprocess import detect_faces
from model.runtime import trim_heap
from model.variants import Variant
from model.weights import load_checkpoint

Protocol = Literal["single", "paper"]

_DEFAULTS = DetectorOptions()


class Detector:
    """EXTD face detector over one checkpoint on one device.

    ``weights`` is a :class:`Checkpoint`, a checkpoint file (released
    ``.pth`` or project ``.safetensors``) or a registry name.
    """

    def __init__(
        self,
        weights: Checkpoint | str | Path,
        *,
        device: str | torch.device = _DEFAULTS.device,
        backend: str = _DEFAULTS.backend,
        bucket_step: int = _DEFAULTS.bucket_step,
        batch_size: int = _DEFAULTS.batch_size,
        batch_pixels: int = _DEFAULTS.batch_pixels,
        runtime: RuntimeOptions = RuntimeOptions(),
    ) -> None:
        self.checkpoint = (
            weights
            if isinstance(weights, Checkpoint)
            else load_checkpoint(weights, runtime=runtime)
        )
        self.device = torch.device(device)
        self.backend: Backend = create_backend(backend, self.checkpoint, self.device, runtime)
        self.bucket_step = bucket_step
        self.batch_size = batch_size
        self.batch_pixels = batch_pixels

    def release_memory(self) -> None:
        """Give back what the backend and the heap keep from the largest inputs seen so far."""
        self.backend.release_memory()
        trim_heap()

    @property
    def variant(self) -> Variant:
        return self.checkpoint.variant

    def plan(self, size: Size, policy: ScalePolicy) -> InputPlan:
        """The sizes an upright ``(height, width)`` image runs at under ``policy``."""
        return plan_input(size, policy, self.bucket_step)

    def load(
        self,
        source: Source,
        policy: ScalePolicy,
        *,
        full_size: bool = False,
        max_pixels: int | None = None,
    ) -> PreparedImage:
        """One encoded image (a file or bytes) planned for this detector and decoded."""
        return load(source, policy, self.bucket_step, full_size=full_size, max_pixels=max_pixels)

    def run(
        self, items: Sequence[PreparedImage], options: Sequence[PostprocessOptions]
    ) -> list[np.ndarray]:
        """Detect on prepared images: one forward pass per input shape, within
        ``batch_size`` images and ``batch_pixels`` input pixels."""
        results: list[np.ndarray | None] = [None] * len(items)
        groups: dict[tuple[int, int], list[int]] = defaultdict(list)
        for index, item in enumerate(items):
            groups[item.input_shape].append(index)
        for shape, indices in groups.items():
            per_pass = self.images_per_pass(shape)
            for start in range(0, len(indices), per_pass):
                chunk = indices[start : start + per_pass]
                faces = self._run_batch(
                    [items[i] for i in chunk], [options[i] for i in chunk], shape
                )
                for index, found in zip(chunk, faces, strict=True):
                    results[index] = found.cpu().numpy()
        return results  # type: ignore[return-value]

    def images_per_pass(self, shape: Size) -> int:
        """How many images of this input shape one forward pass takes."""
        return max(1, min(self.batch_size, self.batch_pixels // (shape[0] * shape[1])))

    def detect(
        self,
        images: Sequence[ImageInput | bytes],
        *,
        score_threshold: float = RELEASE.score_threshold,
        nms_iou: float = RELEASE.nms_iou,
        max_faces: int = RELEASE.max_faces,
        small_face_threshold: float | None = RELEASE.small_face_threshold,
        small_face_size: int = RELEASE.small_face_size,
        scale: float | None = None,
        max_side: int | None = None,
        max_area: int | None = None,
        min_face: int | None = None,
        protocol: Protocol = "single",
    ) -> list[np.ndarray]:
        """Faces per image as ``(n, 5)`` float32 arrays of ``x1 y1 x2 y2 score``.

        Images are arrays, PIL images, files or encoded bytes (files and bytes
        are decoded only as large as the network needs them). Boxes are in the
        pixels of the upright image as given, sorted by descending score, not
        clipped. The defaults are the release's thresholds.
        """
        options = PostprocessOptions(
            score_threshold, nms_iou, max_faces, small_face_threshold, small_face_size
        )
        policy = ScalePolicy(scale, max_side, max_area, min_face)
        if protocol == "single":
            items = [
                self.load(image, policy)
                if isinstance(image, (bytes, str, Path))
                else prepare(pixels := to_rgb_array(image), self.plan(pixels.shape[:2], policy))
                for image in images
            ]
            return self.run(items, [options] * len(items))
        if protocol != "paper":
            raise OptionsError(f"unknown protocol {protocol!r}; expected 'single' or 'paper'")
        arrays = [
            open_image(image) if isinstance(image, bytes) else to_rgb_array(image)
            for image in images
        ]
        return self._detect_paper(arrays, options)

    def paper_items(self, pixels: np.ndarray) -> tuple[list[Pass], list[PreparedImage]]:
        """One upright image's passes of the paper protocol and each prepared to run (by
        :meth:`run`, or by a service's batcher); :func:`~model.paper_protocol.merge_passes`
        joins the faces the passes find."""
        passes = paper_passes(*pixels.shape[:2])
        items = [
            prepare(pixels, self.plan(pixels.shape[:2], ScalePolicy(scale=p.scale)), flip=p.flip)
            for p in passes
        ]
        return passes, items

    def _detect_paper(
        self, arrays: list[np.ndarray], options: PostprocessOptions
    ) -> list[np.ndarray]:
        planned = [self.paper_items(a) for a in arrays]
        items = [item for _, image_items in planned for item in image_items]
        found = iter(self.run(items, [options] * len(items)))
        return [
            merge_found([next(found) for _ in passes], passes, options.max_faces)
            for passes, _ in planned
        ]

    def _run_batch(
        self,
        items: list[PreparedImage],
        options: list[PostprocessOptions],
        shape: Size,
    ) -> list[Tensor]:
        started = time.perf_counter()
        batch = network_batch(items, shape, self.device)
        resized = time.perf_counter()
        offsets, logits = self.backend(batch)
        ran = time.perf_counter()
        anchors = anchor_grid(*shape, device=offsets.device)
        faces = detect_faces(offsets, logits, anchors, shape, options)
        found = [self._to_original(f, item) for f, item in zip(faces, items, strict=True)]
        stages = {"resize": resized - started, "network": ran - resized}
        stages["postprocess"] = time.perf_counter() - ran
        for item in items:
            item.timings_ms.update((k, round(v * 1000, 2)) for k, v in stages.items())
        return found

    @staticmethod
    def _to_original(faces: Tensor, item: PreparedImage) -> Tensor:
        """Boxes in the pixels of the image as given; faces under ``min_face`` dropped."""
        (height, width), (resized_h, resized_w) = item.plan.size, item.plan.resized
        scale = faces.new_tensor([width / resized_w, height / resized_h] * 2)
        boxes = faces[:, :4] * scale
        if item.flip:
            boxes = torch.stack(
                (width - boxes[:, 2], boxes[:, 1], width - boxes[:, 0], boxes[:, 3]), 1
            )
        faces = torch.cat((boxes, faces[:, 4:]), dim=1)
        if item.plan.min_face:
            faces = faces[face_sizes(faces) >= item.plan.min_face * MIN_FACE_TOLERANCE]
        return faces
