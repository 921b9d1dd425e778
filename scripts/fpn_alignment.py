"""Why the bucketed path scores higher than each image's own size.

    python scripts/fpn_alignment.py --split ../shared/data/wider_val_dev --limit 200

At its own size an image's feature maps have odd sides, and the FPN's bilinear
upsampling to the finer map's exact size stretches the grid slightly, which
misplaces the fine maps' features by a fraction of a cell. Padded sizes make the
upsampling an exact 2x, as in training at 640x640. This script scores three
runs on the same images: own size with the release network, own size with the
upsampling made an exact 2x (upsample by 2, then crop to the finer map), and the
bucketed path. If the alignment explains the gap, the second matches the third.
The exact-2x network is an experiment, never what the Detector serves.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from unittest import mock

import torch.nn.functional as F
from torch import Tensor

from model.detector import Detector
from model.eval import evaluate, load_split, predict_split
from model.network import TopDownBlock
from model.runtime import tune_allocator
from model.weights import load_checkpoint


def exact_upsampling(coarse: Tensor, skip: Tensor) -> Tensor:
    """An exact 2x upsampling cropped to ``skip``, in place of ``TopDownBlock.upsample``."""
    height, width = skip.shape[-2:]
    up = F.interpolate(coarse, scale_factor=2, mode="bilinear", align_corners=False)
    return up[..., :height, :width]


RUNS = {
    "own size, release network": ({"scale": 1.0}, TopDownBlock.upsample),
    "own size, exact 2x upsampling": ({"scale": 1.0}, exact_upsampling),
    "bucketed (service default)": ({}, TopDownBlock.upsample),
}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--split", type=Path, required=True)
    parser.add_argument("--weights", default="extd-64")
    parser.add_argument("--limit", type=int)
    args = parser.parse_args()

    tune_allocator()
    split = load_split(args.split).subset(args.limit)
    checkpoint = load_checkpoint(args.weights)  # read once, shared by the three runs
    print(f"| {args.weights} | easy | medium | hard | images |")
    print("| --- | --- | --- | --- | --- |", flush=True)
    for name, (options, upsample) in RUNS.items():
        with mock.patch.object(TopDownBlock, "upsample", staticmethod(upsample)):
            detector = Detector(checkpoint, backend="torch")
            result = evaluate(predict_split(detector, split, progress=False, **options), split)
        print(f"| {name} | {result.table_cells()} | {result.images} |", flush=True)


if __name__ == "__main__":
    main()
