"""Small WIDER split folders cut from the dev split, for commands that take a split folder."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from model.commands.data.fetch import ground_truth_subset


def write_split(folder: Path, dev_split: Path, names: list[str]) -> Path:
    """``folder`` as a split of the dev split's images ``names`` (``<event>/<file>.jpg``): the
    images, and the ground truth and difficulty lists cut from the dev split's."""
    for name in names:
        (folder / "images" / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(dev_split / "images" / name, folder / "images" / name)
    (ground_truth,) = dev_split.glob("wider_face_*_bbx_gt.txt")
    (folder / ground_truth.name).write_text(ground_truth_subset(ground_truth.read_text(), names))
    difficulty = json.loads((dev_split / "difficulty.json").read_text())
    (folder / "difficulty.json").write_text(json.dumps({n: difficulty[n] for n in names}))
    return folder
