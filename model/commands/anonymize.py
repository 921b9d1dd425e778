"""``python -m model anonymize``: photos with every face hidden, written to a folder.

The defaults hide for privacy (``model.options.PRIVACY``: score 0.4, and a
box 1.3 times the face's); ``--protocol paper`` is the thorough
mode (several scales and a flip: more small faces, 5 to 7 times the time).
Each output keeps its input's name (and folder structure under a folder
given as input), its size, upright orientation and format, and carries no
metadata unless ``--keep-metadata``.
"""

from __future__ import annotations

import argparse
from dataclasses import asdict
from pathlib import Path

from tqdm import tqdm

from model.anonymize import AnonymizeOptions, anonymize
from model.commands.arguments import add_detector_options, add_options, build_detector, options_from
from model.commands.detect import expand
from model.errors import ImageError
from model.files import atomic_path
from model.images import OUTPUT_FORMATS, encode_image, output_format, read_header, upright_exif
from model.options import PRIVACY, PostprocessOptions, ScalePolicy


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("anonymize", help="hide the faces of photos", description=__doc__)
    parser.add_argument("inputs", nargs="+", help="image files, folders (recursively) or globs")
    parser.add_argument("--out", type=Path, required=True, help="folder for the results")
    add_detector_options(parser)
    add_options(parser, PostprocessOptions, only=("score_threshold",), defaults=PRIVACY)
    add_options(parser, AnonymizeOptions)
    parser.add_argument(
        "--format", choices=tuple(OUTPUT_FORMATS), help="output format (default: the input's)"
    )
    parser.add_argument(
        "--keep-metadata",
        action="store_true",
        help="keep each photo's EXIF (GPS included); by default none is written",
    )
    parser.set_defaults(handler=run)


def output_path(path: Path, roots: list[Path], out: Path, fmt: str) -> Path:
    """``out`` / the path below the folder it was found in (its name when given as a file),
    with the suffix of ``fmt``."""
    for root in roots:
        if root.is_dir() and path.is_relative_to(root):
            relative = path.relative_to(root)
            break
    else:
        relative = Path(path.name)
    suffix = {"jpeg": ".jpg", "png": ".png", "webp": ".webp"}[fmt]
    if relative.suffix.lower() in (".jpg", ".jpeg") and fmt == "jpeg":
        suffix = relative.suffix
    return out / relative.with_suffix(suffix)


def run(args: argparse.Namespace) -> int:
    options = options_from(PostprocessOptions, args, nms_iou=PRIVACY.nms_iou, max_faces=0)
    policy = options_from(ScalePolicy, args)
    hiding = options_from(AnonymizeOptions, args)
    paths = [Path(p) for p in expand(args.inputs)]
    roots = [Path(p) for p in args.inputs]
    detector = build_detector(args)
    failed = 0
    with tqdm(paths, unit="img", desc="anonymize", disable=len(paths) < 2 or None) as bar:
        for path in bar:
            try:
                item = detector.load(path, policy, full_size=True)
                fmt = args.format or output_format(read_header(path))
                exif = upright_exif(path) if args.keep_metadata else None
            except ImageError as error:
                tqdm.write(f"skipped {error}")
                failed += 1
                continue
            pixels = item.pixels.numpy()
            if args.protocol == "paper":  # thorough: several scales and a flip, 5 to 7 times
                (faces,) = detector.detect([pixels], **asdict(options), protocol="paper")
            else:
                (faces,) = detector.run([item], [options])
            hidden = anonymize(pixels, faces, hiding)
            target = output_path(path, roots, args.out, fmt)
            with atomic_path(target) as scratch:
                scratch.write_bytes(encode_image(hidden, fmt, exif=exif))
            bar.set_postfix(faces=len(faces))
            if len(paths) < 2:
                print(f"{target}: {len(faces)} faces hidden")
    return 1 if failed else 0
