"""WIDER FACE ground truth: the official text format plus easy/medium/hard lists.

A split folder holds ``images/<event>/<file>.jpg``, the official
``wider_face_<split>_bbx_gt.txt`` and ``difficulty.json`` (per image, the
1-based indices of the boxes each setting scores). Boxes are kept exactly as
written, quirks included (all-zero placeholders, a negative width): the
evaluator copes with them, and dropping them would change the official AP.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

import numpy as np

from model.errors import DataError

SETTINGS = ("easy", "medium", "hard")
# The two fixed halves of a split, by event (the number before "--" in the image's folder):
# a default chosen by measurement is chosen on "tune" and reported on both.
Half = Literal["tune", "report"]
HALVES: tuple[Half, ...] = ("tune", "report")


@dataclass(frozen=True)
class WiderSplit:
    """Images (relative paths, official order), boxes ``x y w h`` and setting lists."""

    root: Path
    images: tuple[str, ...]
    boxes: dict[str, np.ndarray]
    lists: dict[str, dict[str, np.ndarray]]

    def image_path(self, name: str) -> Path:
        return self.root / "images" / name

    def subset(self, limit: int | None) -> WiderSplit:
        """Every k-th image, so that ``limit`` images still span all events."""
        if not limit or limit >= len(self.images):
            return self
        step = len(self.images) // limit
        return replace(self, images=self.images[::step][:limit])

    def half(self, which: Half) -> WiderSplit:
        """The images of the even-numbered events ("tune") or the odd-numbered ones
        ("report"): whole events, so a default tuned on one half meets new scenes on the
        other (on the dev split: 422 and 412 images)."""
        if which not in HALVES:
            raise DataError(f"no half {which!r}; expected one of {HALVES}")
        parity = HALVES.index(which)
        return replace(self, images=tuple(n for n in self.images if _event(n) % 2 == parity))


def _event(name: str) -> int:
    """The event number of an image path such as ``12--Group/12_Group_....jpg``."""
    try:
        return int(name.split("--", 1)[0])
    except ValueError as error:
        raise DataError(f"{name!r} does not start with a WIDER event number") from error


def parse_ground_truth(text: str) -> dict[str, np.ndarray]:
    """Official ``bbx_gt.txt`` -> ``{relative image path: (n, 4) x y w h}``, file order kept."""
    lines = [line.strip() for line in text.splitlines()]
    boxes: dict[str, np.ndarray] = {}
    i = 0
    while i < len(lines):
        name = lines[i]
        if not name:
            i += 1
            continue
        try:
            count = int(lines[i + 1])
        except (IndexError, ValueError) as error:
            raise DataError(f"ground truth: bad face count after {name!r}") from error
        # An image with no faces is written as count 0 (or 1) plus one all-zero line.
        written = max(count, 1)
        values = [row.split()[:4] for row in lines[i + 2 : i + 2 + written]]
        if len(values) != written:
            raise DataError(f"ground truth: {name!r} ends before its {count} boxes")
        faces = np.array(values, dtype=np.float64).reshape(-1, 4)
        boxes[name] = faces if count else faces[:0]
        i += 2 + written
    return boxes


def load_split(root: str | Path) -> WiderSplit:
    """Read a split folder (the layout of ``wider_val_dev``)."""
    root = Path(root)
    found = sorted(root.glob("wider_face_*_bbx_gt.txt"))
    if len(found) != 1:
        raise DataError(f"{root}: expected one wider_face_*_bbx_gt.txt, found {len(found)}")
    boxes = parse_ground_truth(found[0].read_text())
    difficulty_file = root / "difficulty.json"
    if not difficulty_file.is_file():
        raise DataError(f"{root}: difficulty.json (easy/medium/hard lists) is missing")
    difficulty = json.loads(difficulty_file.read_text())
    lists = {
        setting: {
            name: np.asarray(difficulty.get(name, {}).get(setting, []), dtype=np.int64)
            for name in boxes
        }
        for setting in SETTINGS
    }
    return WiderSplit(root, tuple(boxes), boxes, lists)


def gt_face_sizes(xywh: np.ndarray) -> np.ndarray:
    """The size of each ground-truth face: the longer side of its box (as ``min_face`` means)."""
    return np.maximum(xywh[:, 2], xywh[:, 3]) if len(xywh) else np.zeros(0)


def at_least(split: WiderSplit, min_face: int) -> WiderSplit:
    """The split with faces smaller than ``min_face`` left out of every setting's list: the
    evaluator then ignores them (a detection on one is neither found nor false)."""
    if not min_face:
        return split
    lists = {
        setting: {
            name: indices[gt_face_sizes(split.boxes[name])[indices - 1] >= min_face]
            if len(indices)
            else indices
            for name, indices in per_image.items()
        }
        for setting, per_image in split.lists.items()
    }
    return replace(split, lists=lists)
