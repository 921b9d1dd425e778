"""Write a grid of augmented training samples with their boxes, for looking at.

python scripts/augment_grid.py --data-root ../shared/data/wider_val_dev --out augment.png
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

from model.draw import draw_faces
from model.train.data import WiderFaceTrainSet, load_annotations


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data-root", type=Path, required=True)
    parser.add_argument("--out", type=Path, default=Path("augment.png"))
    parser.add_argument("--rows", type=int, default=4)
    parser.add_argument("--columns", type=int, default=6)
    parser.add_argument("--size", type=int, default=320)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    annotations, _ = load_annotations(args.data_root, limit=args.rows * args.columns)
    dataset = WiderFaceTrainSet(annotations, size=args.size, seed=args.seed)
    grid = Image.new("RGB", (args.columns * args.size, args.rows * args.size), "white")
    for index in range(min(len(dataset), args.rows * args.columns)):
        image, boxes = dataset[(0, index)]
        pixels = image.permute(1, 2, 0).numpy()
        faces = np.c_[boxes.numpy() * args.size, np.ones(len(boxes))]
        tile = draw_faces(pixels, faces, min_score=0.0)
        row, column = divmod(index, args.columns)
        grid.paste(tile, (column * args.size, row * args.size))
    grid.save(args.out)
    print(args.out)


if __name__ == "__main__":
    main()
