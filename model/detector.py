"""The batched face detector: images in, faces in original pixel coordinates out.

Images are resized by a scale policy, grouped by network input size and run
one batch per group. With a fixed ``scale`` every image runs at exactly its
scaled size (the release's behaviour, bit for bit); otherwise images are
padded to size buckets (multiples of ``bucket_step``) so that similar images
share a batch. The bucket depends only on the image itself, so a result
never depends on which other images were in the call.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from model.anchors import anchor_grid
from model.backends import Backend, create_backend
from model.checkpoint import Checkpoint
from model.conventions import MEAN_RGB
from model.images import ImageInput, to_rgb_array
from model.options import RELEASE, DetectorOptions, PostprocessOptions, ScalePolicy
from model.paper_protocol import merge_passes, paper_passes
from model.postprocess import detect_faces
from model.runtime import trim_heap
from model.variants import Variant
from model.weights import load_checkpoint

Protocol = Literal["single", "paper"]

_DEFAULTS = DetectorOptions()


@dataclass(frozen=True)
class PreparedImage:
    """An image ready for a batch: its pixels, sizes and network input shape."""

    pixels: Tensor
    size: tuple[int, int]
    resized: tuple[int, int]
    input_shape: tuple[int, int]
    flip: bool = False


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
    ) -> None:
        self.checkpoint = weights if isinstance(weights, Checkpoint) else load_checkpoint(weights)
        self.device = torch.device(device)
        self.backend: Backend = create_backend(backend, self.checkpoint, self.device)
        self.bucket_step = bucket_step
        self.batch_size = batch_size
        self.batch_pixels = batch_pixels
        self._mean = torch.tensor(MEAN_RGB, device=self.device).view(3, 1, 1)

    def release_memory(self) -> None:
        """Give back what the backend and the heap keep from the largest inputs seen so far."""
        self.backend.release_memory()
        trim_heap()

    @property
    def variant(self) -> Variant:
        return self.checkpoint.variant

    def prepare(
        self, image: ImageInput, policy: ScalePolicy | None = None, *, flip: bool = False
    ) -> PreparedImage:
        """Decode and size one image; cheap, and safe to call from worker threads."""
        pixels = to_rgb_array(image)
        return self.prepare_array(pixels, policy or ScalePolicy(), flip=flip)

    def sizes(
        self, height: int, width: int, policy: ScalePolicy
    ) -> tuple[tuple[int, int], tuple[int, int]]:
        """``(resized, input_shape)`` of a ``height x width`` image: the size the policy
        gives it, and the network input it runs in (padded to its bucket unless exact)."""
        factor = policy.factor(height, width)
        resized = (max(1, round(height * factor)), max(1, round(width * factor)))
        if policy.exact:
            return resized, resized
        step = self.bucket_step
        return resized, (-(-resized[0] // step) * step, -(-resized[1] // step) * step)

    def prepare_array(
        self,
        pixels: np.ndarray,
        policy: ScalePolicy,
        *,
        size: tuple[int, int] | None = None,
        flip: bool = False,
    ) -> PreparedImage:
        """Size one decoded image. ``size`` is the ``(height, width)`` the boxes are reported
        in, when ``pixels`` were decoded smaller (JPEG DCT scaling); default their own."""
        height, width = size or pixels.shape[:2]
        resized, input_shape = self.sizes(height, width, policy)
        tensor = torch.from_numpy(np.require(pixels, requirements=["C", "W"]))
        return PreparedImage(tensor, (height, width), resized, input_shape, flip)

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
            per_pass = max(1, min(self.batch_size, self.batch_pixels // (shape[0] * shape[1])))
            for start in range(0, len(indices), per_pass):
                chunk = indices[start : start + per_pass]
                faces = self._run_batch(
                    [items[i] for i in chunk], [options[i] for i in chunk], shape
                )
                for index, found in zip(chunk, faces, strict=True):
                    results[index] = found.cpu().numpy()
        return results  # type: ignore[return-value]

    def detect(
        self,
        images: Sequence[ImageInput],
        *,
        score_threshold: float = RELEASE.score_threshold,
        nms_iou: float = RELEASE.nms_iou,
        max_faces: int = RELEASE.max_faces,
        scale: float | None = None,
        max_side: int | None = None,
        max_area: int | None = None,
        protocol: Protocol = "single",
    ) -> list[np.ndarray]:
        """Faces per image as ``(n, 5)`` float32 arrays of ``x1 y1 x2 y2 score``.

        Boxes are in the pixels of the image as given, sorted by descending
        score, not clipped. The defaults are the release's thresholds.
        """
        options = PostprocessOptions(score_threshold, nms_iou, max_faces)
        arrays = [to_rgb_array(image) for image in images]
        if protocol == "single":
            policy = ScalePolicy(scale, max_side, max_area)
            items = [self.prepare_array(a, policy) for a in arrays]
            return self.run(items, [options] * len(items))
        if protocol != "paper":
            raise ValueError(f"unknown protocol {protocol!r}; expected 'single' or 'paper'")
        return self._detect_paper(arrays, options)

    def _detect_paper(
        self, arrays: list[np.ndarray], options: PostprocessOptions
    ) -> list[np.ndarray]:
        plans = [paper_passes(*a.shape[:2]) for a in arrays]
        items = [
            self.prepare_array(a, ScalePolicy(scale=p.scale), flip=p.flip)
            for a, plan in zip(arrays, plans, strict=True)
            for p in plan
        ]
        found = iter(self.run(items, [options] * len(items)))
        results = []
        for plan in plans:
            per_pass = [torch.from_numpy(next(found)) for _ in plan]
            results.append(merge_passes(per_pass, plan, options.max_faces).numpy())
        return results

    def _run_batch(
        self,
        items: list[PreparedImage],
        options: list[PostprocessOptions],
        shape: tuple[int, int],
    ) -> list[Tensor]:
        batch = torch.zeros((len(items), 3, *shape), device=self.device)
        for row, item in enumerate(items):
            pixels = item.pixels.to(self.device).permute(2, 0, 1).float()
            if item.flip:
                pixels = pixels.flip(-1)
            if tuple(item.pixels.shape[:2]) != item.resized:
                pixels = F.interpolate(
                    pixels[None], size=item.resized, mode="bilinear", align_corners=False
                )[0]
            batch[row, :, : item.resized[0], : item.resized[1]] = pixels - self._mean
        offsets, logits = self.backend(batch)
        anchors = anchor_grid(*shape, device=offsets.device)
        faces = detect_faces(offsets, logits, anchors, shape, options)
        return [self._to_original(f, item) for f, item in zip(faces, items, strict=True)]

    @staticmethod
    def _to_original(faces: Tensor, item: PreparedImage) -> Tensor:
        (height, width), (resized_h, resized_w) = item.size, item.resized
        scale = faces.new_tensor([width / resized_w, height / resized_h] * 2)
        boxes = faces[:, :4] * scale
        if item.flip:
            boxes = torch.stack(
                (width - boxes[:, 2], boxes[:, 1], width - boxes[:, 0], boxes[:, 3]), 1
            )
        return torch.cat((boxes, faces[:, 4:]), dim=1)
