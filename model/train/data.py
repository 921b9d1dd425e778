"""Training data: WIDER FACE annotations, augmented samples and a resumable sampler."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from model.conventions import gt_to_corners
from model.errors import DataError, ImageError
from model.eval.split import parse_ground_truth
from model.images import open_image
from model.train.augment import augment

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Annotation:
    path: Path
    boxes: np.ndarray  # (n, 4) x1 y1 x2 y2 in pixels


def find_layout(root: Path) -> tuple[Path, Path]:
    """``(images folder, ground-truth file)`` of an official WIDER download or a split folder.

    Official: ``WIDER_train/images`` + ``wider_face_split/wider_face_train_bbx_gt.txt``;
    split folder (like ``wider_val_dev``): ``images/`` + ``wider_face_*_bbx_gt.txt``.
    """
    official = root / "wider_face_split" / "wider_face_train_bbx_gt.txt"
    if official.is_file() and (root / "WIDER_train" / "images").is_dir():
        return root / "WIDER_train" / "images", official
    found = sorted(root.glob("wider_face_*_bbx_gt.txt"))
    if len(found) == 1 and (root / "images").is_dir():
        return root / "images", found[0]
    raise DataError(
        f"{root}: expected WIDER_train/images + wider_face_split/wider_face_train_bbx_gt.txt, "
        "or images/ + one wider_face_*_bbx_gt.txt"
    )


def load_annotations(root: str | Path, *, limit: int | None = None) -> tuple[list[Annotation], int]:
    """Images with their valid boxes, and the number of invalid boxes skipped.

    A box is invalid when its width or height is not positive. Images left
    without boxes are kept (they still teach the background).
    """
    images, gt_file = find_layout(Path(root))
    parsed = parse_ground_truth(gt_file.read_text())
    annotations, skipped = [], 0
    for name, xywh in parsed.items():
        valid = (xywh[:, 2] > 0) & (xywh[:, 3] > 0)
        skipped += int((~valid).sum())
        xywh = xywh[valid]
        corners = gt_to_corners(xywh).astype(np.float32)
        annotations.append(Annotation(images / name, corners))
    if limit:
        annotations = annotations[:: max(1, len(annotations) // limit)][:limit]
    if skipped:
        log.info("skipped %d invalid boxes (zero or negative size)", skipped)
    return annotations, skipped


def sample_seed(seed: int, epoch: int, index: int) -> np.random.SeedSequence:
    return np.random.SeedSequence([seed, epoch, index])


class WiderFaceTrainSet(Dataset):
    """Augmented ``(image uint8 3xSxS, boxes (n, 4) normalised)`` samples.

    Indices are ``(epoch, position)`` pairs from :class:`ResumableSampler`:
    each sample's augmentation is drawn from its own seeded generator, so the
    data stream does not depend on worker count or on where a run resumed.
    """

    def __init__(self, annotations: list[Annotation], *, size: int, seed: int) -> None:
        self.annotations = annotations
        self.size = size
        self.seed = seed

    def __len__(self) -> int:
        return len(self.annotations)

    def __getitem__(self, key: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        epoch, index = key
        annotation = self.annotations[index]
        rng = np.random.default_rng(sample_seed(self.seed, epoch, index))
        try:
            pixels = open_image(annotation.path)
        except ImageError as error:
            log.warning("unreadable training image, using a blank one: %s", error)
            pixels, boxes = (
                np.zeros((self.size, self.size, 3), np.uint8),
                np.zeros((0, 4), np.float32),
            )
        else:
            pixels, boxes = augment(pixels, annotation.boxes, size=self.size, rng=rng)
        image = torch.from_numpy(np.ascontiguousarray(pixels)).permute(2, 0, 1)
        return image, torch.from_numpy(boxes / self.size).float()


def collate(
    samples: list[tuple[torch.Tensor, torch.Tensor]],
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    images, boxes = zip(*samples, strict=True)
    return torch.stack(images), list(boxes)


class ResumableSampler(Sampler[tuple[int, int]]):
    """Endless shuffled ``(epoch, index)`` stream, sharded over ranks, started at any sample.

    Global sample ``n`` is position ``n % len`` of epoch ``n // len``'s
    permutation; rank ``r`` of ``w`` takes samples ``r, r + w, ...``.
    """

    def __init__(
        self, size: int, *, seed: int, rank: int = 0, world: int = 1, start: int = 0
    ) -> None:
        self.size = size
        self.seed = seed
        self.rank = rank
        self.world = world
        self.start = start

    def _order(self, epoch: int) -> np.ndarray:
        return np.random.default_rng([self.seed, epoch]).permutation(self.size)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        sample = self.start + self.rank
        epoch, order = -1, np.empty(0, dtype=np.int64)
        while True:
            if sample // self.size != epoch:
                epoch = sample // self.size
                order = self._order(epoch)
            yield epoch, int(order[sample % self.size])
            sample += self.world
