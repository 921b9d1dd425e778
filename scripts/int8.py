"""Build ``openvino-int8`` for the released checkpoints and measure what it loses, per half.

    python scripts/int8.py                                # the recipe and photos auto uses
    python scripts/int8.py --update-manifest              # and record the losses
    python scripts/int8.py --widths 64 --recipes performance mixed mixed+stem+heads
    python scripts/int8.py --calibration DIR              # other photos (EXTD_CALIBRATION_DIR)

The int8 model is built by the backend itself (``model/backends/int8.py``:
the recipe, the calibration window, the cache), from the checkpoint and the
calibration photos alone, so this is how the int8 model a deployment builds at
its first start is reproduced and measured. For each checkpoint and recipe:
AP (easy / medium / hard) of fp32 (``openvino``) and int8 on both halves of
the dev split, images as served (the default scale policy and size buckets).
A recipe is chosen on the tuning half; the reporting half's hard AP loss is
what ``--update-manifest`` writes to ``weights/manifest.toml``
(``int8_hard_ap_loss``, what ``auto`` reads), for the default recipe.

A recipe is a preset (``performance``, ``mixed``) and its options, joined by
``+``: what stays in float, ``stem`` (the first convolution) and ``heads``
(the detection heads); ``nobc`` (no bias correction) or ``fullbc`` (NNCF's
full one); ``histogram`` or ``quantile`` (activation ranges other than the
extremes seen). ``performance+stem+heads+histogram`` is auto's.
"""

from __future__ import annotations

import argparse
import os
import re
from dataclasses import replace
from pathlib import Path

import torch

from model.backends.int8 import RECIPE, Recipe
from model.backends.openvino import OpenVinoBackend
from model.detector import Detector
from model.eval import evaluate, load_split, predict_split
from model.eval.split import HALVES
from model.files import atomic_path
from model.options import RuntimeOptions
from model.runtime import tune_allocator
from model.weights import known_checkpoints, load_checkpoint, manifest_path
from tools import data

# Recipe options by the name a recipe is written with, after its preset.
OPTIONS = {
    "stem": {"float_stem": True},
    "heads": {"float_heads": True},
    "nobc": {"bias_correction": "none"},
    "fullbc": {"bias_correction": "full"},
    "histogram": {"activation_ranges": "histogram"},
    "quantile": {"activation_ranges": "mean_quantile"},
}


def parse_recipe(text: str) -> Recipe:
    preset, *kept = text.split("+")
    unknown = set(kept) - set(OPTIONS)
    if preset not in ("performance", "mixed") or unknown:
        raise argparse.ArgumentTypeError(f"bad recipe {text!r}: see --help")
    fields = {"float_stem": False, "float_heads": False}
    for name in kept:
        fields |= OPTIONS[name]
    return Recipe(preset, **fields)


def recipe_name(recipe: Recipe) -> str:
    kept = [n for n, f in OPTIONS.items() if all(getattr(recipe, k) == v for k, v in f.items())]
    return "+".join([recipe.preset, *kept])


def update_manifest(losses: dict[str, float]) -> None:
    """Write each checkpoint's ``int8_hard_ap_loss`` line in the manifest, comments kept."""
    path = manifest_path()
    blocks = re.split(r"(?m)^(?=\[\[checkpoint\]\])", path.read_text())
    for i, block in enumerate(blocks):
        name = re.search(r'(?m)^name = "([^"]+)"', block)
        if name and name[1] in losses:
            line = f"int8_hard_ap_loss = {losses[name[1]]:.2f}"
            blocks[i] = re.sub(r"(?m)^int8_hard_ap_loss = .*$", line, block)
    with atomic_path(path) as scratch:
        scratch.write_text("".join(blocks))
    print(f"wrote the losses to {path}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--split", type=Path, help="a WIDER split (default: the dev split)")
    parser.add_argument("--widths", nargs="+", type=int, default=[32, 48, 64])
    parser.add_argument(
        "--recipes", nargs="+", type=parse_recipe, default=[RECIPE], help="(default: auto's)"
    )
    parser.add_argument(
        "--calibration",
        type=Path,
        help="calibration photos (default: EXTD_CALIBRATION_DIR, else the shipped ones)",
    )
    parser.add_argument("--limit", type=int, help="images of each half, every k-th")
    parser.add_argument(
        "--halves", nargs="+", choices=HALVES, default=list(HALVES), help="(default: both)"
    )
    parser.add_argument(
        "--update-manifest",
        action="store_true",
        help="record the reporting half's loss of the default recipe in the manifest",
    )
    args = parser.parse_args()
    if args.update_manifest and ("report" not in args.halves or RECIPE not in args.recipes):
        parser.error("--update-manifest needs the reporting half and the default recipe")

    runtime = RuntimeOptions.from_environment(os.environ)
    if args.calibration:
        runtime = replace(runtime, calibration_dir=args.calibration)
    tune_allocator(runtime.tune_allocator)
    split = load_split(args.split or data.require(*data.DEV_SPLIT))
    halves = {half: split.half(half).subset(args.limit) for half in args.halves}
    names = {e.variant.width: name for name, e in known_checkpoints().items()}
    print(
        "| checkpoint | recipe | half | images | fp32 easy | medium | hard "
        "| int8 easy | medium | hard | hard AP loss (points) |"
    )
    print("| --- " * 11 + "|", flush=True)
    losses = {}
    for width in args.widths:
        checkpoint = load_checkpoint(data.require("weights", f"EXTD_{width}.pth"))
        detector = Detector(checkpoint, backend="openvino", runtime=runtime)
        fp32 = {
            h: evaluate(predict_split(detector, s, progress=False), s) for h, s in halves.items()
        }
        for recipe in args.recipes:
            detector.backend = OpenVinoBackend(
                checkpoint, torch.device("cpu"), runtime, precision="int8", recipe=recipe
            )
            for half, part in halves.items():
                int8 = evaluate(predict_split(detector, part, progress=False), part)
                loss = round(100 * (fp32[half].ap["hard"] - int8.ap["hard"]), 2)
                if recipe == RECIPE and half == "report":
                    losses[names[width]] = loss
                print(
                    f"| {names[width]} | {recipe_name(recipe)} | {half} | {len(part.images)} "
                    f"| {fp32[half].table_cells()} | {int8.table_cells()} | {loss:+.2f} |",
                    flush=True,
                )
    calibration = runtime.calibration_dir or "the shipped photos (model/calibration)"
    print(f"calibrated on {calibration}, at most {runtime.calibration_images} photos")
    if args.update_manifest:
        update_manifest(losses)


if __name__ == "__main__":
    main()
