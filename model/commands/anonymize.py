"""``python -m model anonymize``: photos and videos with every face hidden, written to a folder.

The defaults hide for privacy (``model.options.PRIVACY``: score 0.4, and a
box 1.3 times the face's); ``--protocol paper`` is the thorough
mode (several scales and a flip: more small faces, 5 to 7 times the time).
Each output keeps its input's name (and folder structure under a folder
given as input), its size, upright orientation and format, and carries no
metadata unless ``--keep-metadata``. A video (mp4, mov, mkv, webm, avi; the
``video`` extra) keeps its frame count, timestamps, duration and audio; a
face found in a frame stays hidden ``--hold`` frames before and after it.
"""

from __future__ import annotations

import argparse
from dataclasses import asdict
from pathlib import Path

from tqdm import tqdm

from model.anonymize import AnonymizeOptions, anonymize
from model.commands.arguments import add_detector_options, add_options, build_detector, options_from
from model.commands.detect import IMAGE_SUFFIXES, expand
from model.errors import ImageError
from model.files import atomic_path
from model.images import OUTPUT_FORMATS, encode_image, output_format, read_header, upright_exif
from model.options import PRIVACY, PostprocessOptions, ScalePolicy
from model.video import VIDEO_SUFFIXES, VideoError, VideoOptions, anonymize_video, is_video, probe


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("anonymize", help="hide the faces of photos", description=__doc__)
    parser.add_argument("inputs", nargs="+", help="photos, videos, folders (recursively) or globs")
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
    add_options(parser, VideoOptions)
    parser.set_defaults(handler=run)


def output_path(path: Path, roots: list[Path], out: Path, fmt: str | None) -> Path:
    """``out`` / the path below the folder it was found in (its name when given as a file),
    with the suffix of ``fmt`` (a video keeps its own)."""
    for root in roots:
        if root.is_dir() and path.is_relative_to(root):
            relative = path.relative_to(root)
            break
    else:
        relative = Path(path.name)
    if fmt is None:
        return out / relative
    suffix = {"jpeg": ".jpg", "png": ".png", "webp": ".webp"}[fmt]
    if relative.suffix.lower() in (".jpg", ".jpeg") and fmt == "jpeg":
        suffix = relative.suffix
    return out / relative.with_suffix(suffix)


def run(args: argparse.Namespace) -> int:
    options = options_from(PostprocessOptions, args, nms_iou=PRIVACY.nms_iou, max_faces=0)
    policy = options_from(ScalePolicy, args)
    hiding = options_from(AnonymizeOptions, args)
    video = options_from(VideoOptions, args)
    paths = [Path(p) for p in expand(args.inputs, (*IMAGE_SUFFIXES, *VIDEO_SUFFIXES))]
    roots = [Path(p) for p in args.inputs]
    detector = build_detector(args)
    failed = 0
    with tqdm(paths, unit="file", desc="anonymize", disable=len(paths) < 2 or None) as bar:
        for path in bar:
            try:
                if is_video(path):
                    target = output_path(path, roots, args.out, None)
                    frames = _video(path, target, detector, options, policy, hiding, video)
                    bar.write(f"{target}: {frames} frames")
                else:
                    faces = _photo(path, roots, detector, options, policy, hiding, args)
                    bar.set_postfix(faces=faces)
            except (ImageError, VideoError) as error:
                bar.write(f"skipped {error}")
                failed += 1
    return 1 if failed else 0


def _photo(path, roots, detector, options, policy, hiding, args) -> int:
    """One photo hidden and written; the faces found."""
    item = detector.load(path, policy, full_size=True)
    fmt = args.format or output_format(read_header(path))
    exif = upright_exif(path) if args.keep_metadata else None
    pixels = item.pixels.numpy()
    if args.protocol == "paper":  # thorough: several scales and a flip, 5 to 7 times
        (faces,) = detector.detect([pixels], **asdict(options), protocol="paper")
    else:
        (faces,) = detector.run([item], [options])
    target = output_path(path, roots, args.out, fmt)
    with atomic_path(target) as scratch:
        scratch.write_bytes(encode_image(anonymize(pixels, faces, hiding), fmt, exif=exif))
    return len(faces)


def _video(path, target, detector, options, policy, hiding, video) -> int:
    """One video hidden and written, with a progress bar in frames a second."""
    total = probe(path).frames or None
    with tqdm(total=total, unit="frame", desc=path.name, leave=False) as frames:

        def advance(done: int) -> None:
            frames.update(done - frames.n)

        return anonymize_video(
            path,
            target,
            detector,
            options=options,
            policy=policy,
            hiding=hiding,
            video=video,
            progress=advance,
        )
