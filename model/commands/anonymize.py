"""``python -m model anonymize``: photos and videos with every face hidden, written to a folder.

The defaults hide for privacy (``model.options.PRIVACY``: score 0.5, falling
to 0.15 for faces under 20 pixels, and a box 1.2 times the face's plus 3
pixels); ``--protocol paper`` is the thorough mode (several scales and a
flip: more small faces, about 5 times the time).
Each output keeps its input's name (and folder structure under a folder
given as input), its size, upright orientation, format and alpha channel
(flattened on white for ``--format jpeg``; colours under alpha 0 come out
white), and carries no metadata unless ``--keep-metadata``. Animated images
are skipped: convert them to a video first. A video (mp4, mov, mkv, webm, avi; the
``video`` extra) keeps its frame count, timestamps, duration and audio; a
face is tracked across frames, and stays hidden where it moves in the frames
up to ``--hold`` before and after it that miss it.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from tqdm import tqdm

from model.anonymize import AnonymizeOptions, anonymize
from model.commands.arguments import add_detector_options, add_options, build_detector, options_from
from model.commands.detect import IMAGE_SUFFIXES, expand
from model.detector import Detector
from model.errors import ImageError
from model.files import atomic_path
from model.images import (
    OUTPUT_FORMATS,
    Source,
    encode_image,
    output_format,
    read_header,
    upright_exif,
)
from model.inputs import decode
from model.options import PRIVACY, PostprocessOptions, ScalePolicy
from model.paper_protocol import merge_found
from model.video import VIDEO_SUFFIXES, VideoError, VideoOptions, anonymize_video, is_video, probe


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("anonymize", help="hide the faces of photos", description=__doc__)
    parser.add_argument("inputs", nargs="+", help="photos, videos, folders (recursively) or globs")
    parser.add_argument("--out", type=Path, required=True, help="folder for the results")
    add_detector_options(parser)
    add_photo_options(parser)
    add_options(parser, VideoOptions)
    parser.set_defaults(handler=run)


def add_photo_options(parser: argparse.ArgumentParser) -> None:
    """How faces are found, hidden and written back (``batch anonymize`` shares them)."""
    add_options(
        parser,
        PostprocessOptions,
        only=("score_threshold", "small_face_threshold", "small_face_size"),
        defaults=PRIVACY,
    )
    add_options(parser, AnonymizeOptions)
    parser.add_argument(
        "--format", choices=tuple(OUTPUT_FORMATS), help="output format (default: the input's)"
    )
    parser.add_argument(
        "--keep-metadata",
        action="store_true",
        help="keep each photo's EXIF (GPS included); by default none is written",
    )


def photo_options(
    args: argparse.Namespace,
) -> tuple[PostprocessOptions, ScalePolicy, AnonymizeOptions]:
    """The thresholds, sizing and hiding that :func:`add_photo_options`' flags ask for."""
    options = options_from(PostprocessOptions, args, nms_iou=PRIVACY.nms_iou, max_faces=0)
    return options, options_from(ScalePolicy, args), options_from(AnonymizeOptions, args)


def relative_path(path: Path, roots: list[Path]) -> Path:
    """The path below the folder it was found in (its name when given as a file)."""
    for root in roots:
        if root.is_dir() and path.is_relative_to(root):
            return path.relative_to(root)
    return Path(path.name)


def output_path(relative: Path, out: Path, fmt: str | None) -> Path:
    """``out`` / ``relative`` with the suffix of ``fmt`` (a video keeps its own)."""
    if fmt is None:
        return out / relative
    suffix = {"jpeg": ".jpg", "png": ".png", "webp": ".webp"}[fmt]
    if relative.suffix.lower() in (".jpg", ".jpeg") and fmt == "jpeg":
        suffix = relative.suffix
    return out / relative.with_suffix(suffix)


def run(args: argparse.Namespace) -> int:
    options, policy, hiding = photo_options(args)
    video = options_from(VideoOptions, args)
    paths = [Path(p) for p in expand(args.inputs, (*IMAGE_SUFFIXES, *VIDEO_SUFFIXES))]
    roots = [Path(p) for p in args.inputs]
    detector = build_detector(args)
    failed = 0
    with tqdm(paths, unit="file", desc="anonymize", disable=len(paths) < 2 or None) as bar:
        for path in bar:
            try:
                relative = relative_path(path, roots)
                if is_video(path):
                    target = output_path(relative, args.out, None)
                    frames = _video(path, target, detector, options, policy, hiding, video, args)
                    bar.write(f"{target}: {frames} frames")
                else:
                    faces = hide_photo(path, relative, detector, options, policy, hiding, args)
                    bar.set_postfix(faces=faces)
            except (ImageError, VideoError) as error:
                bar.write(f"skipped {error}")
                failed += 1
    return 1 if failed else 0


def hide_photo(
    source: Source,
    relative: Path,
    detector: Detector,
    options: PostprocessOptions,
    policy: ScalePolicy,
    hiding: AnonymizeOptions,
    args: argparse.Namespace,
) -> int:
    """One photo (a file or its bytes) hidden and written to ``args.out`` / ``relative`` in
    the format :func:`add_photo_options` asks for; the faces found."""
    header = read_header(source)
    item = decode(source, detector.plan(header.size, policy), full_size=True)
    fmt = args.format or output_format(header)
    exif = upright_exif(header) if args.keep_metadata else None
    pixels = item.pixels.numpy()
    if args.protocol == "paper":  # thorough: several scales and a flip, about 5 times
        passes, items = detector.paper_items(pixels)
        found = detector.run(items, [options] * len(items))
        faces = merge_found(found, passes, options.max_faces, keep_single=True)
    else:
        (faces,) = detector.run([item], [options])
    target = output_path(relative, args.out, fmt)
    with atomic_path(target) as scratch:
        hidden = anonymize(pixels, faces, hiding, input_scale=item.plan.scale)
        scratch.write_bytes(encode_image(hidden, fmt, alpha=item.alpha, exif=exif))
    return len(faces)


def _video(path, target, detector, options, policy, hiding, video, args) -> int:
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
            protocol=args.protocol,
            progress=advance,
        )
