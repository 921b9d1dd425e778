"""Hiding faces in a video, this project against ``deface``, on a clip made from dev photos.

    python bench/anonymize_video.py --deface-python /tmp/deface/bin/python

The clip: crowd photos of the dev split, each panned and zoomed over for a
few seconds at 1920x1080 and 25 frames/s, with the ground truth moved along
frame by frame, and an audio track. Both tools run on it at their defaults
on the same cores (``deface`` through its own command, in its own virtual
environment; this project through ``anonymize_video``), and the table gives,
side by side: ground-truth faces (hard lists, at least 10 pixels, inside the
frame) left visible per 1,000 face-frames (under 90 % of the box hidden), the
share of the frames outside every ground-truth face hidden anyway
(over-masking), frames/s, and whether frame count, frame rate, duration and
audio survive.
``--holds``, ``--thresholds`` and ``--mask-scales`` add this project's rows
for other hold lengths, score thresholds and mask scales (from the same run's
detections: how the defaults were chosen).
"""

from __future__ import annotations

import argparse
import itertools
import subprocess
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import av
import numpy as np
from PIL import Image
from tqdm import tqdm

from model.anonymize import AnonymizeOptions, face_mask
from model.detector import Detector
from model.eval import load_split
from model.options import PRIVACY, ScalePolicy
from model.runtime import tune_allocator
from model.video import VideoOptions, anonymize_video, held_faces, neighbours, probe
from tools import data
from tools.deface import DEFACE_MASK

SIZE, RATE = (1920, 1080), 25
HIDDEN, MIN_FACE = 0.9, 10

DEFACE_MASKS = (
    DEFACE_MASK
    + r"""
import sys
import imageio.v2 as imageio
from deface.centerface import CenterFace
clip, out = sys.argv[1], sys.argv[2]
centerface, masks = CenterFace(), []
with imageio.get_reader(clip) as video:
    for pixels in video:
        dets, _ = centerface(pixels, threshold=0.2)
        masks.append(np.packbits(deface_mask(dets, pixels.shape[:2])))
np.savez_compressed(out, *masks)
"""
)


def crowd_photos(count: int) -> list[tuple[Path, np.ndarray]]:
    """The dev photos with the most hard-set faces of 10 pixels and more."""
    split = load_split(data.require(*data.DEV_SPLIT))
    ranked = []
    for name in split.images:
        boxes = (
            split.boxes[name][split.lists["hard"][name] - 1]
            if len(split.lists["hard"][name])
            else []
        )
        boxes = np.asarray(boxes).reshape(-1, 4)
        boxes = boxes[np.maximum(boxes[:, 2], boxes[:, 3]) >= MIN_FACE]
        ranked.append((len(boxes), split.image_path(name), boxes))
    ranked.sort(key=lambda r: -r[0])
    return [(path, boxes) for _, path, boxes in ranked[:count]]


def make_clip(path: Path, photos, seconds: float) -> list[np.ndarray]:
    """Each photo panned and zoomed over; returns each frame's ground truth (x y w h)."""
    truth = []
    frames = int(seconds * RATE)
    with av.open(str(path), "w") as out:
        video = out.add_stream("libx264", rate=RATE)
        video.width, video.height = SIZE
        video.pix_fmt = "yuv420p"
        video.options = {"crf": "18", "preset": "veryfast"}
        sound = out.add_stream("aac", rate=48000)
        sound.layout = "mono"
        index = 0
        for photo, boxes in photos:
            image = Image.open(photo).convert("RGB")
            width, height = image.size
            for step in range(frames):
                t = step / max(1, frames - 1)
                zoom = 1.0 - 0.3 * t  # the crop shrinks to 70 %: faces grow
                crop_w, crop_h = width * zoom, width * zoom * SIZE[1] / SIZE[0]
                crop_h = min(crop_h, height)
                left = (width - crop_w) * t
                top = (height - crop_h) * (0.5 + 0.5 * np.sin(2 * np.pi * t)) / 2
                box = (left, top, left + crop_w, top + crop_h)
                pixels = np.asarray(image.resize(SIZE, Image.Resampling.BILINEAR, box=box))
                sx, sy = SIZE[0] / crop_w, SIZE[1] / crop_h
                moved = np.column_stack(
                    [(boxes[:, 0] - left) * sx, (boxes[:, 1] - top) * sy, boxes[:, 2] * sx,
                     boxes[:, 3] * sy]
                )  # fmt: skip
                truth.append(moved)
                frame = av.VideoFrame.from_ndarray(pixels, format="rgb24")
                frame.pts = index
                index += 1
                for packet in video.encode(frame):
                    out.mux(packet)
        for packet in video.encode(None):
            out.mux(packet)
        tone = np.sin(2 * np.pi * 440 * np.arange(int(48000 * index / RATE)) / 48000)
        chunk = av.AudioFrame.from_ndarray(
            (0.2 * tone).astype(np.float32)[None], format="fltp", layout="mono"
        )
        chunk.sample_rate, chunk.pts = 48000, 0
        for packet in [*sound.encode(chunk), *sound.encode(None)]:
            out.mux(packet)
    return truth


def leaks(truth: list[np.ndarray], masks) -> tuple[int, int, float]:
    """Face-frames left visible, face-frames in all, and the share of the frames outside every
    ground-truth face that is hidden anyway (over-masking)."""
    leaked = total = 0
    outside = hidden = 0
    for boxes, mask in zip(truth, masks, strict=True):
        height, width = mask.shape
        faces = np.zeros_like(mask)
        for x, y, w, h in boxes:
            x1, y1, x2, y2 = (round(v) for v in (x, y, x + w, y + h))
            faces[max(0, y1) : max(0, y2), max(0, x1) : max(0, x2)] = True
            if x1 < 0 or y1 < 0 or x2 > width or y2 > height or max(w, h) < MIN_FACE:
                continue
            total += 1
            leaked += mask[y1:y2, x1:x2].mean() < HIDDEN
        outside += (~faces).sum()
        hidden += (mask & ~faces).sum()
    return leaked, total, hidden / outside


def survives(source: Path, output: Path) -> str:
    a, b = probe(source), probe(output)
    checks = {
        "frames": a.frames == b.frames,
        "fps": a.rate == b.rate,
        "duration": abs(a.duration_s - b.duration_s) <= 1 / float(a.rate),
        "audio": b.audio_streams == a.audio_streams,
    }
    return ", ".join(f"{k} {'kept' if ok else 'changed'}" for k, ok in checks.items())


def row(label: str, leaked: int, total: int, over: float, fps: float | None, kept: str) -> str:
    rate = f"{fps:.2f}" if fps else ""
    return (
        f"| {label} | {1000 * leaked / total:.1f} ({leaked} of {total}) | {100 * over:.2f} % "
        f"| {rate} | {kept} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--deface-python", help="the python of a venv with deface installed")
    parser.add_argument("--photos", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=3.0, help="per photo")
    parser.add_argument("--backend", default="auto")
    parser.add_argument("--holds", type=int, nargs="*", default=[0, 1, 2, 4])
    parser.add_argument("--thresholds", type=float, nargs="*", default=[PRIVACY.score_threshold])
    parser.add_argument(
        "--mask-scales", type=float, nargs="*", default=[AnonymizeOptions().mask_scale]
    )
    args = parser.parse_args()
    tune_allocator()
    with tempfile.TemporaryDirectory() as folder:
        clip = Path(folder) / "clip.mp4"
        truth = make_clip(clip, crowd_photos(args.photos), args.seconds)
        info = probe(clip)
        print(f"clip: {info.frames} frames, {info.width}x{info.height}, {float(info.rate):g} "
              f"frames/s, {info.duration_s:.1f} s, audio")  # fmt: skip
        print(
            "| tool | face-frames left visible per 1,000 | over-masking | frames/s | the output |"
        )
        print("| --- | --- | --- | --- | --- |")
        if args.deface_python:
            deface_out = Path(folder) / "deface.mp4"
            start = time.perf_counter()
            subprocess.run(
                [str(Path(args.deface_python).parent / "deface"), str(clip), "-o", str(deface_out),
                 "--keep-audio"],
                check=True, capture_output=True,
            )  # fmt: skip
            fps = info.frames / (time.perf_counter() - start)
            masks_file = Path(folder) / "masks.npz"
            subprocess.run([args.deface_python, "-c", DEFACE_MASKS, str(clip), str(masks_file)],
                           check=True)  # fmt: skip
            saved = np.load(masks_file)
            masks = [
                np.unpackbits(saved[f"arr_{i}"])[: SIZE[0] * SIZE[1]].reshape(SIZE[1], SIZE[0]) > 0
                for i in range(len(truth))
            ]
            print(row("deface 1.5.0, defaults", *leaks(truth, masks), fps,
                      survives(clip, deface_out)), flush=True)  # fmt: skip
        detector = Detector(data.require("weights", "EXTD_64.pth"), backend=args.backend)
        found: dict[int, np.ndarray] = {}
        ours = Path(folder) / "ours.mp4"
        lowest = replace(PRIVACY, score_threshold=min(args.thresholds))
        start = time.perf_counter()
        with tqdm(total=info.frames, unit="frame") as bar:
            anonymize_video(
                clip, ours, detector,
                options=lowest, policy=ScalePolicy(), hiding=AnonymizeOptions(),
                video=VideoOptions(hold=0),
                progress=lambda done: bar.update(done - bar.n),
                hidden=lambda index, faces: found.setdefault(index, faces),
            )  # fmt: skip
        fps = info.frames / (time.perf_counter() - start)
        default = (PRIVACY.score_threshold, AnonymizeOptions().mask_scale, VideoOptions().hold)
        grid = itertools.product(
            sorted({*args.thresholds}),
            sorted({*args.mask_scales}),
            sorted({*args.holds, VideoOptions().hold}),
        )
        for threshold, mask_scale, hold in grid:
            hiding = AnonymizeOptions(mask_scale=mask_scale)
            kept = {i: faces[faces[:, 4] > threshold] for i, faces in found.items()}
            masks = [
                face_mask(
                    (SIZE[1], SIZE[0]), held_faces(kept[i], *neighbours(kept, i, hold)), hiding
                )
                for i in range(len(truth))
            ]
            label = f"EXTD-64 ({detector.backend.name}): {threshold}, {mask_scale}, hold {hold}"
            chosen = (threshold, mask_scale, hold) == default
            print(row(label + (" (defaults)" if chosen else ""), *leaks(truth, masks),
                      fps if chosen else None, survives(clip, ours) if chosen else ""),
                  flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
