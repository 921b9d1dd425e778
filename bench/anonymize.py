"""Hiding faces, this project against ``deface`` (CenterFace), tuned on one half of the dev
split and reported on both.

    python -m venv /tmp/deface && /tmp/deface/bin/pip install deface==1.5.0 onnx onnxruntime
    nice -n 10 python bench/anonymize.py --deface-python /tmp/deface/bin/python

The dev split is cut in two fixed halves by event (``WiderSplit.half``): the
defaults are chosen on "tune" only, and every figure is printed for both
halves; a default tuned on the photos it is reported on shows a gain that
held-out photos take back. A ground-truth face counts as hidden when at
least 90 % of its box is; over-masking is the share of the picture outside
every ground-truth face that is hidden anyway (mean over photos).

Each detector runs once per photo at a low threshold and its boxes are kept
in ``--cache`` (``deface`` in its own virtual environment, the command
above), so every threshold, shape and growth below is a sweep over cached
boxes, exactly what a run at those settings returns (thresholds cut after
NMS, as :mod:`model.postprocess` does). Printed:

1. the curves: hidden shares against over-masking across the threshold
   range, for deface (its ellipse, its ``--replacewith solid`` boxes) and for
   this project with each shape and growth;
2. the choice: over a grid of thresholds and masks, on the tuning half, the
   setting that hides the most faces (mean of easy, medium and hard) while
   masking at most 85 % of what deface's defaults mask outside faces (a
   margin for photos the defaults never saw); the defaults in
   ``model.options.PRIVACY`` and ``AnonymizeOptions`` are that setting;
3. one factor at a time, on every ``--paper-every``-th photo: the scale
   policy, a flip, an enlarged pass for small faces, the paper protocol;
4. ms per photo on every ``--time-every``-th photo, one thread each (a
   number for a quiet machine only).
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from model.anonymize import AnonymizeOptions, anonymize, face_mask
from model.detector import Detector
from model.eval import SETTINGS, WiderSplit, load_split
from model.eval.split import HALVES
from model.images import open_image, read_header
from model.inputs import prepare
from model.options import PRIVACY, PostprocessOptions, RuntimeOptions, ScalePolicy
from model.paper_protocol import Pass, merge_found, paper_passes
from model.postprocess import above_thresholds
from model.runtime import tune_allocator
from tools import data
from tools.deface import DETECT, LOWEST, MASK_SCALE, THRESHOLD, deface_mask

HIDDEN = 0.9  # a face counts as hidden when this share of its box is
OVER_BUDGET = 0.85  # of deface's over-masking at its defaults, on the tuning half
# Our boxes are cached above this score (the release's lowest): every threshold above sweeps.
CACHED = PostprocessOptions(score_threshold=LOWEST, max_faces=0)
DEFAULTS = AnonymizeOptions()
# The grid the defaults are chosen from (every combination), and the curves' thresholds.
GRID = {
    "score_threshold": (0.4, 0.5, 0.6),
    "small_face_threshold": (0.1, 0.15, 0.2),
    "small_face_size": (16, 20, 24),
    "mask": ((1.1, 3.0), (1.15, 3.0), (1.2, 2.0), (1.2, 3.0), (1.25, 2.0)),
}
CURVE = (0.2, 0.3, 0.4, 0.5, 0.6, 0.7)
# Masks drawn on the curves: ours, the old defaults' and deface's geometry.
SHAPES = {
    "box 1.2 + 3 px (default)": DEFAULTS,
    "box 1.3": replace(DEFAULTS, mask_scale=1.3, mask_margin=0.0),
    "ellipse 1.6": replace(DEFAULTS, shape="ellipse", mask_scale=1.6, mask_margin=0.0),
}


@dataclass(frozen=True)
class Truth:
    """A photo's ground truth as the scores need it: boxes clipped to the photo."""

    boxes: np.ndarray  # x1 y1 x2 y2, integers, clipped
    valid: np.ndarray  # a box with an area inside the photo
    lists: dict[str, np.ndarray]  # setting -> 0-based indices
    inside: np.ndarray  # H x W: inside some ground-truth box

    @classmethod
    def of(cls, split: WiderSplit, name: str, size: tuple[int, int]) -> Truth:
        height, width = size
        x, y, w, h = split.boxes[name].astype(int).T if len(split.boxes[name]) else [[]] * 4
        boxes = np.stack(
            [np.clip(x, 0, width), np.clip(y, 0, height), np.clip(np.add(x, w), 0, width),
             np.clip(np.add(y, h), 0, height)], axis=1,
        ).astype(int).reshape(-1, 4)  # fmt: skip
        valid = (np.asarray(w) > 0) & (np.asarray(h) > 0)
        valid &= (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
        inside = np.zeros(size, bool)
        for x1, y1, x2, y2 in boxes[valid]:
            inside[y1:y2, x1:x2] = True
        lists = {s: split.lists[s][name] - 1 for s in SETTINGS}
        return cls(boxes, valid, lists, inside)

    def score(self, mask: np.ndarray) -> tuple[dict[str, np.ndarray], float]:
        """Per setting, whether each listed face is hidden; and the over-masking."""
        shares = np.full(len(self.boxes), np.nan)
        for i in np.flatnonzero(self.valid):
            x1, y1, x2, y2 = self.boxes[i]
            shares[i] = mask[y1:y2, x1:x2].mean()
        hidden = {}
        for setting, listed in self.lists.items():
            kept = shares[listed]
            hidden[setting] = kept[~np.isnan(kept)] >= HIDDEN
        outside = ~self.inside
        return hidden, float(np.count_nonzero(mask & outside) / max(1, outside.sum()))


Score = dict[str, float]


def score(truths: dict[str, Truth], masks: Iterable[tuple[str, np.ndarray]]) -> Score:
    hidden: dict[str, list[np.ndarray]] = {s: [] for s in SETTINGS}
    over = []
    for name, mask in masks:
        per_setting, outside = truths[name].score(mask)
        over.append(outside)
        for setting, flags in per_setting.items():
            hidden[setting].append(flags)
    result = {s: float(np.concatenate(hidden[s]).mean()) for s in SETTINGS}
    return result | {"over": float(np.mean(over))}


def cells(result: Score) -> str:
    shares = " / ".join(f"{result[s]:.1%}" for s in SETTINGS)
    return f"{shares} | {result['over']:.2%}"


@dataclass
class Ours:
    """This project's cached boxes: per photo, the single pass (the service's) and, on some
    photos, each pass of the paper protocol; and the scale the single pass saw it at."""

    single: dict[str, np.ndarray]
    scale: dict[str, float]
    passes: dict[str, list[np.ndarray]]

    def faces(self, name: str, options: PostprocessOptions) -> np.ndarray:
        return cut(self.single[name], self.scale[name], options)

    def merged(self, name: str, size: tuple[int, int], keep: Callable[[Pass], bool],
               options: PostprocessOptions, keep_single: bool) -> np.ndarray:  # fmt: skip
        plan = paper_passes(*size)
        chosen = [i for i, p in enumerate(plan) if keep(p)]
        found = [cut(self.passes[name][i], plan[i].scale, options) for i in chosen]
        return merge_found(found, [plan[i] for i in chosen], 0, keep_single=keep_single)


def cut(faces: np.ndarray, scale: float, options: PostprocessOptions) -> np.ndarray:
    """The cached faces a run at ``options`` keeps."""
    return above_thresholds(torch.from_numpy(faces), options, scale).numpy()


def cached(folder: Path, name: str, compute: Callable[[], dict[str, np.ndarray]]) -> dict:
    path = folder / (name.replace("/", "__") + ".npz")
    if not path.exists():
        folder.mkdir(parents=True, exist_ok=True)
        np.savez(path, **compute())
    with np.load(path) as saved:
        return dict(saved)


def detect_ours(split: WiderSplit, detector: Detector, folder: Path, paper_every: int) -> Ours:
    ours = Ours({}, {}, {})
    paper = set(split.images[::paper_every])
    for name in tqdm(split.images, desc="this project", unit="img"):

        def compute(name: str = name) -> dict[str, np.ndarray]:
            pixels = open_image(split.image_path(name))
            item = prepare(pixels, detector.plan(pixels.shape[:2], ScalePolicy()))
            items = [item, *(detector.paper_items(pixels)[1] if name in paper else [])]
            found = detector.run(items, [CACHED] * len(items))
            return {"scale": np.array(item.plan.scale)} | {f"f{i}": f for i, f in enumerate(found)}

        saved = cached(folder / ("paper" if name in paper else "single"), name, compute)
        ours.single[name], ours.scale[name] = saved["f0"], float(saved["scale"])
        if name in paper:
            ours.passes[name] = [saved[f"f{i}"] for i in range(1, len(saved) - 1)]
    return ours


def detect_deface(
    split: WiderSplit, python: str, folder: Path, time_every: int
) -> tuple[dict[str, np.ndarray], list[float], float]:
    """deface's boxes per photo, its ms per photo at its defaults, and the share of its own
    masks' pixels that :func:`deface_mask` draws differently."""
    out = folder / "deface.npz"
    if not out.exists():
        folder.mkdir(parents=True, exist_ok=True)
        paths = [str(split.image_path(name)) for name in split.images]
        request = {"photos": paths, "out": str(out), "check_every": 16, "time_every": time_every}
        with tempfile.NamedTemporaryFile("w", suffix=".json") as file:
            json.dump(request, file)
            file.flush()
            subprocess.run([python, "-c", DETECT, file.name], check=True)
    with np.load(out) as saved:
        dets = {name: saved[f"dets_{i}"] for i, name in enumerate(split.images)}
        wrong = total = 0
        for i, name in enumerate(split.images):
            if f"ellipse_{i}" not in saved:
                continue
            size = open_image(split.image_path(name)).shape[:2]
            default = dets[name][dets[name][:, 4] > THRESHOLD]
            for kind, ellipse in (("ellipse", True), ("solid", False)):
                own = np.unpackbits(saved[f"{kind}_{i}"])[: size[0] * size[1]].reshape(size)
                mine = deface_mask(default, size, MASK_SCALE, ellipse)
                wrong += np.count_nonzero(own.astype(bool) != mine)
                total += np.count_nonzero(own)
        return dets, list(saved["times"]), wrong / max(1, total)


def timings(split: WiderSplit, detector: Detector, every: int) -> dict[str, float]:
    """ms per photo, detection and hiding (reading and writing files left out)."""
    times: dict[str, list[float]] = {"single": [], "paper": []}
    for name in split.images[::every]:
        pixels = open_image(split.image_path(name))
        for protocol in times:
            start = time.perf_counter()
            if protocol == "single":
                item = prepare(pixels, detector.plan(pixels.shape[:2], ScalePolicy()))
                (faces,) = detector.run([item], [PRIVACY])
            else:
                plan, items = detector.paper_items(pixels)
                found = detector.run(items, [PRIVACY] * len(items))
                faces = merge_found(found, plan, 0, keep_single=True)
            anonymize(pixels, faces, DEFAULTS)
            times[protocol].append((time.perf_counter() - start) * 1000)
    return {protocol: statistics.mean(values) for protocol, values in times.items()}


Rows = dict[str, Callable[[list[str]], Score]]


def table(title: str, rows: Rows, halves: dict[str, list[str]]) -> None:
    print(f"\n{title}\n| setting | {' | '.join(halves)} |\n| --- |{' --- |' * len(halves)}")
    for label, measure in rows.items():
        shown = " | ".join(cells(measure(names)) for names in halves.values())
        print(f"| {label} | {shown} |", flush=True)


@dataclass
class Bench:
    """The cached boxes and ground truth, and what a setting scores on a list of photos."""

    truths: dict[str, Truth]
    sizes: dict[str, tuple[int, int]]
    boxes: Ours  # this project's
    dets: dict[str, np.ndarray]  # deface's, empty without it

    def ours(self, options: PostprocessOptions, hiding: AnonymizeOptions) -> Callable:
        def measure(names: list[str]) -> Score:
            faces = ((n, self.boxes.faces(n, options)) for n in names)
            return self._score(faces, hiding)

        return measure

    def merged(self, keep: Callable[[Pass], bool], keep_single: bool = True) -> Callable:
        def measure(names: list[str]) -> Score:
            faces = (
                (n, self.boxes.merged(n, self.sizes[n], keep, PRIVACY, keep_single)) for n in names
            )
            return self._score(faces, DEFAULTS)

        return measure

    def deface(self, threshold: float, ellipse: bool) -> Callable:
        def measure(names: list[str]) -> Score:
            masks = (
                (n, deface_mask(self.dets[n][self.dets[n][:, 4] > threshold], self.sizes[n],
                                MASK_SCALE, ellipse))
                for n in names
            )  # fmt: skip
            return score(self.truths, masks)

        return measure

    def _score(self, faces: Iterable[tuple[str, np.ndarray]], hiding: AnonymizeOptions) -> Score:
        masks = (
            (n, face_mask(self.sizes[n], f, hiding, input_scale=self.boxes.scale[n]))
            for n, f in faces
        )
        return score(self.truths, masks)


def choose(
    bench: Bench, tune: list[str], budget: float
) -> tuple[PostprocessOptions, AnonymizeOptions]:
    """The grid's setting that hides the most faces on ``tune`` (mean of the three settings'
    shares) within ``budget`` of over-masking."""
    chosen, best = None, -1.0
    for threshold, small, size, (scale, margin) in itertools.product(*GRID.values()):
        options = replace(
            PRIVACY, score_threshold=threshold, small_face_threshold=small, small_face_size=size
        )
        hiding = replace(DEFAULTS, mask_scale=scale, mask_margin=margin)
        result = bench.ours(options, hiding)(tune)
        mean = sum(result[s] for s in SETTINGS) / len(SETTINGS)
        if result["over"] <= budget and mean > best:
            chosen, best = (options, hiding), mean
    if chosen is None:
        raise SystemExit(f"no setting of the grid masks at most {budget:.2%}")
    return chosen


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--split", type=Path, help="a WIDER split (default: the dev split)")
    parser.add_argument("--weights", type=Path, help="default: EXTD_64.pth of the found data")
    parser.add_argument("--backend", default="auto")
    parser.add_argument("--deface-python", help="the python of a venv with deface installed")
    parser.add_argument(
        "--cache",
        type=Path,
        default=RuntimeOptions().cache_dir / "bench-anonymize",
        help="where boxes are kept between runs (default: ~/.cache/extd/bench-anonymize)",
    )
    parser.add_argument("--paper-every", type=int, default=8, help="photos with every pass")
    parser.add_argument("--time-every", type=int, default=20, help="photos timed")
    args = parser.parse_args()
    tune_allocator()
    torch.set_num_threads(1)  # OpenVINO takes the thread count when it compiles
    split = load_split(args.split or data.require(*data.DEV_SPLIT))
    weights = args.weights or data.require("weights", "EXTD_64.pth")
    detector = Detector(weights, backend=args.backend)
    folder = args.cache / f"{detector.checkpoint.sha256[:12]}-{detector.backend.name}"
    sizes = {name: read_header(split.image_path(name)).size for name in split.images}
    truths = {name: Truth.of(split, name, sizes[name]) for name in split.images}
    bench = Bench(truths, sizes, detect_ours(split, detector, folder, args.paper_every), {})
    halves = {half: list(split.half(half).images) for half in HALVES}
    print(
        f"dev split: {', '.join(f'{h} {len(n)} photos' for h, n in halves.items())}; a face is "
        f"hidden when {HIDDEN:.0%} of its box is; shares easy / medium / hard | over-masking"
    )
    deface_ms: list[float] = []
    if args.deface_python:
        bench.dets, deface_ms, mismatch = detect_deface(
            split, args.deface_python, args.cache / "deface", args.time_every
        )
        print(f"deface's masks drawn here differ from its own in {mismatch:.4%} of their pixels")
        rows = {
            f"deface {kind}, {threshold}": bench.deface(threshold, ellipse)
            for kind, ellipse in (("defaults (ellipse)", True), ("--replacewith solid", False))
            for threshold in CURVE
        }
        table("deface 1.5.0 across its threshold (mask scale 1.3: 1.6 here)", rows, halves)

    rows = {}
    for (label, hiding), small in itertools.product(SHAPES.items(), (True, False)):
        for threshold in CURVE:
            options = replace(PRIVACY, score_threshold=threshold)
            where = f"{PRIVACY.small_face_threshold} under {PRIVACY.small_face_size} px"
            if not small:
                options, where = replace(options, small_face_threshold=None), "every size"
            rows[f"EXTD-64 {label}: {threshold}, {where}"] = bench.ours(options, hiding)
    title = f"EXTD-64 ({detector.backend.name}), single pass, across the threshold"
    table(title, rows, halves)

    if bench.dets:
        over = bench.deface(THRESHOLD, True)(halves["tune"])["over"]
        options, hiding = choose(bench, halves["tune"], OVER_BUDGET * over)
        same = (options, hiding) == (PRIVACY, DEFAULTS)
        print(
            f"\nchosen on the tuning half (over-masking at most {OVER_BUDGET:.0%} of deface's "
            f"{over:.2%}): {options.score_threshold}, {options.small_face_threshold} under "
            f"{options.small_face_size} px; box {hiding.mask_scale} + {hiding.mask_margin} px "
            f"({'the defaults' if same else 'NOT the defaults'})"
        )

    paper = {half: [n for n in names if n in bench.boxes.passes] for half, names in halves.items()}
    rows = {
        "single pass, bucketed (the service's)": bench.ours(PRIVACY, DEFAULTS),
        "single pass at its own size": bench.merged(lambda p: p.keep == "all" and not p.flip),
        "own size + flip": bench.merged(lambda p: p.keep == "all"),
        "own size + enlarged pass for small faces": bench.merged(
            lambda p: (p.keep == "all" and not p.flip) or p.scale > 1
        ),
        "paper protocol, the release's voting (a face one pass found dropped)": bench.merged(
            lambda p: True, keep_single=False
        ),
        "paper protocol, every face kept (protocol=paper)": bench.merged(lambda p: True),
    }
    if bench.dets:
        rows |= {
            "deface defaults": bench.deface(THRESHOLD, True),
            "deface --replacewith solid": bench.deface(THRESHOLD, False),
        }
    counts = ", ".join(f"{h} {len(n)}" for h, n in paper.items())
    table(f"one factor at a time, every {args.paper_every}th photo ({counts})", rows, paper)

    ms = timings(split, detector, args.time_every)
    cost = f"protocol=paper {ms['paper']:.0f} ({ms['paper'] / ms['single']:.1f}x)"
    print(
        f"\nms per photo (every {args.time_every}th photo, one thread): EXTD-64 "
        f"{detector.backend.name} single {ms['single']:.0f}, {cost}"
        + (f"; deface {statistics.mean(deface_ms):.0f}" if deface_ms else "")
    )


if __name__ == "__main__":
    main()
