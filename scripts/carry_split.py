"""Copy N images of the dev split, with their ground truth, into a folder small enough to
travel to a lent GPU machine (its working tree carries ignored folders of up to 64 MiB).

    python scripts/carry_split.py 200 gpu-carry/split

The images are every k-th of the split (all events); the folder is a split of its own
(``images/``, the official ground-truth file, ``difficulty.json``) that the evaluator and
``bench/gpu_all.py --split`` read. WIDER FACE is for non-commercial research only: keep the
folder out of the repository (``gpu-carry/`` is ignored).
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from model.eval.split import load_split
from tools import data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("count", type=int, help="images to copy")
    parser.add_argument("target", type=Path, help="the new split folder")
    parser.add_argument("--split", type=Path, help="the source split (default: the dev split)")
    args = parser.parse_args()
    source = args.split or data.require(*data.DEV_SPLIT)
    split = load_split(source).subset(args.count)
    lines, difficulty = [], json.loads((source / "difficulty.json").read_text())
    for name in split.images:
        target = args.target / "images" / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(split.image_path(name), target)
        boxes = split.boxes[name]
        lines += [name, str(len(boxes))]
        # The official format writes an image without faces as one all-zero box.
        lines += [" ".join(str(int(v)) for v in box) for box in boxes] or ["0 0 0 0"]
    (args.target / "wider_face_val_bbx_gt.txt").write_text("\n".join(lines) + "\n")
    kept = {name: difficulty[name] for name in split.images if name in difficulty}
    (args.target / "difficulty.json").write_text(json.dumps(kept))
    print(f"{len(split.images)} images in {args.target}")


if __name__ == "__main__":
    main()
