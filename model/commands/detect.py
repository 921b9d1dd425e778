"""``python -m model detect``: faces in image files, folders or globs.

The defaults answer people (score 0.5, the fastest accurate backend). The
release's exact detections: ``--backend torch --scale 1 --score-threshold 0.05``.
"""

from __future__ import annotations

import argparse
import glob
import json
import sys
from collections.abc import Collection, Iterator
from dataclasses import asdict
from pathlib import Path

from tqdm import tqdm

from model.commands.arguments import add_detector_options, add_options, build_detector, options_from
from model.draw import draw_faces
from model.errors import OptionsError
from model.images import open_image
from model.options import SERVING, PostprocessOptions, ScalePolicy

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif"}
# Images decoded and detected at once: bounds memory on large folders.
CHUNK = 8


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("detect", help="detect faces in image files", description=__doc__)
    parser.add_argument(
        "images", nargs="+", help="image files, folders (searched recursively) or globs"
    )
    add_detector_options(parser)
    add_options(parser, PostprocessOptions, defaults=SERVING)
    parser.add_argument(
        "--json", action="store_true", help="print {image path: [[x1, y1, x2, y2, score], ...]}"
    )
    parser.add_argument(
        "--draw", type=Path, help="write copies of the images with boxes drawn here"
    )
    parser.set_defaults(handler=run)


def expand(patterns: list[str], suffixes: Collection[str] = IMAGE_SUFFIXES) -> list[str]:
    """Files as given; folders as their files of ``suffixes`` (recursively, sorted); globs as
    their matches."""
    paths: list[str] = []
    for pattern in patterns:
        path = Path(pattern)
        if path.is_dir():
            found = (p for p in path.rglob("*") if p.suffix.lower() in suffixes)
            paths += sorted(str(p) for p in found if p.is_file())
        elif not path.exists() and glob.has_magic(pattern):
            matches = sorted(glob.glob(pattern, recursive=True))
            if not matches:
                raise OptionsError(f"{pattern}: no file matches")
            paths += matches
        else:
            paths.append(pattern)
    if not paths:
        raise OptionsError(f"no images found in {' '.join(patterns)}")
    return paths


def _chunks(items: list[str]) -> Iterator[list[str]]:
    for start in range(0, len(items), CHUNK):
        yield items[start : start + CHUNK]


def run(args: argparse.Namespace) -> int:
    paths = expand(args.images)
    options = options_from(PostprocessOptions, args)
    policy = options_from(ScalePolicy, args)
    detector = build_detector(args)
    if args.draw:
        args.draw.mkdir(parents=True, exist_ok=True)
    payload = {}
    with tqdm(total=len(paths), unit="img", desc="detect", disable=len(paths) < 2 or None) as bar:
        for chunk in _chunks(paths):
            # Files go in as paths: JPEGs are decoded only as large as the network needs.
            results = detector.detect(
                [Path(p) for p in chunk],
                **asdict(options),
                **asdict(policy),
                protocol=args.protocol,
            )
            for path, faces in zip(chunk, results, strict=True):
                if args.draw:
                    out = args.draw / f"{Path(path).stem}.jpg"
                    draw_faces(open_image(Path(path)), faces, min_score=0).save(out, quality=90)
                if args.json:
                    payload[path] = [[round(float(v), 3) for v in face] for face in faces]
                else:
                    tqdm.write(
                        f"{path}: {len(faces)} faces scoring above {options.score_threshold}"
                    )
                    for x1, y1, x2, y2, score in faces:
                        tqdm.write(f"  {x1:8.1f} {y1:8.1f} {x2:8.1f} {y2:8.1f}  {score:.3f}")
            bar.update(len(chunk))
    if args.json:
        json.dump(payload, sys.stdout)
        sys.stdout.write("\n")
    return 0
