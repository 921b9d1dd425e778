"""``python -m model batch detect`` on local Ray against the plain ``python -m model detect``,
in one run.

    python bench/batch.py                    # 200 dev photos, once each (about 5 min on 2 cores)
    python bench/batch.py --limit 50 --rounds 3

Links every k-th photo of the WIDER dev split into a temporary folder (nothing
is copied), pulls the weights and converts the model untimed, then times each
command as a user runs it: a fresh process, imports, Ray's start, the actors and
their model load included. Rows: the plain command, then the batch command with
one actor holding every CPU, with one actor per CPU, with the defaults, and
with two actors of half the CPUs each where that differs. Rounds are
interleaved and the median is printed, with seconds per photo, the ratio to the
plain command and the share of the plain command's boxes that the Parquet rows
match at IoU 0.9 or more.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow.parquet as pq
import torch

from model.boxes import box_iou
from model.commands.batch import DEFAULT_CPUS_PER_ACTOR
from tools import data

MATCH_IOU = 0.9


def link_photos(split: Path, limit: int, folder: Path) -> int:
    """Every k-th photo of the split (all events covered), linked under ``folder``."""
    photos = sorted((split / "images").rglob("*.jpg"))
    chosen = photos[:: max(1, len(photos) // limit)][:limit]
    for photo in chosen:
        link = folder / photo.relative_to(split / "images")
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(photo)
    return len(chosen)


def timed(command: list[str], env: dict) -> tuple[float, str]:
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    seconds = time.perf_counter() - start
    if done.returncode:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr[-3000:]}")
    return seconds, done.stdout


def matched(plain: dict[str, list], out: Path) -> tuple[float, int]:
    """The share of the plain command's boxes the rows have at IoU >= MATCH_IOU, and the
    number of rows."""
    rows = pq.read_table(out).to_pylist()
    found = {row["path"]: [face["box"] for face in row["faces"] or []] for row in rows}
    hits = total = 0
    for path, faces in plain.items():
        expected = torch.tensor([face[:4] for face in faces]).reshape(-1, 4)
        got = torch.tensor(found.get(path, [])).reshape(-1, 4)
        total += len(expected)
        if len(expected) and len(got):
            hits += int((box_iou(expected, got).max(dim=1).values >= MATCH_IOU).sum())
    return hits / max(total, 1), len(rows)


def cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown CPU"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--limit", type=int, default=200, help="dev photos (default: 200)")
    parser.add_argument("--rounds", type=int, default=1, help="runs of each row (default: 1)")
    parser.add_argument("--weights", default="extd-64")
    args = parser.parse_args()

    cpus = os.cpu_count() or 1
    env = {**os.environ, "EXTD_WEIGHTS_MIRROR": str(data.require("weights"))}
    model = [sys.executable, "-m", "model"]
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch) / "photos"
        photos = link_photos(data.require(*data.DEV_SPLIT), args.limit, folder)
        # Untimed: the weights pulled, the OpenVINO model converted and cached.
        warm = next(folder.rglob("*.jpg"))
        timed([*model, "detect", str(warm), "--weights", args.weights], env)

        rows = {"plain `python -m model detect`": ["detect", str(folder), "--json"]}
        batch = ["batch", "detect", str(folder)]
        rows[f"batch, 1 actor x {cpus} CPUs"] = [*batch, "--actors", "1", "--num-cpus", str(cpus)]
        rows[f"batch, {cpus} actors x 1 CPU"] = [*batch, "--num-cpus", "1"]
        per_actor = min(DEFAULT_CPUS_PER_ACTOR, cpus)
        rows[f"batch, defaults ({cpus // per_actor:.0f} actors x {per_actor:g} CPUs)"] = batch
        if cpus > 2 and cpus % 2 == 0:
            half = str(cpus // 2)
            rows[f"batch, 2 actors x {half} CPUs"] = [*batch, "--actors", "2", "--num-cpus", half]
        seconds: dict[str, list[float]] = {name: [] for name in rows}
        agreement: dict[str, str] = {}
        plain: dict[str, list] = {}
        for round_ in range(args.rounds):
            for index, (name, command) in enumerate(rows.items()):
                out = Path(scratch) / f"out-{index}-{round_}"
                extra = [] if name.startswith("plain") else ["--out", str(out)]
                took, stdout = timed([*model, *command, "--weights", args.weights, *extra], env)
                seconds[name].append(took)
                if name.startswith("plain"):
                    plain = json.loads(stdout)
                    agreement[name] = "reference"
                else:
                    share, count = matched(plain, out)
                    agreement[name] = f"{share:.1%} ({count} rows)"
                print(f"  {name}: {took:.1f} s", file=sys.stderr, flush=True)

    print(f"{photos} WIDER dev photos, {args.weights}, {cpus} CPUs ({cpu_name()}), ", end="")
    print(f"median of {args.rounds} round(s)\n")
    print("| command | wall s | s per photo | vs plain | plain's boxes matched (IoU 0.9) |")
    print("| --- | --- | --- | --- | --- |")
    baseline = statistics.median(next(iter(seconds.values())))
    for name, values in seconds.items():
        wall = statistics.median(values)
        print(
            f"| {name} | {wall:.1f} | {wall / photos:.3f} | {wall / baseline:.2f}x "
            f"| {agreement[name]} |"
        )


if __name__ == "__main__":
    main()
