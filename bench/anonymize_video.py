"""Hiding faces in videos, this project against ``deface``, on clips made from each half of the
dev split.

    python -m venv /tmp/deface && /tmp/deface/bin/pip install deface==1.5.0 onnx onnxruntime
    nice -n 10 python bench/anonymize_video.py --deface-python /tmp/deface/bin/python

A clip per half (``WiderSplit.half``): its crowd photos with the most hard-set
faces of 10 pixels and more, each panned and zoomed over for a few seconds at
1920x1080 and 25 frames/s, with the ground truth moved along frame by frame,
and an audio track. The video's defaults (``VideoOptions.hold``) are chosen
on the "tune" clip and reported on both. ``deface`` runs through its own
command (``--replacewith solid --keep-audio``, in its own virtual environment)
for its speed and output, and once more for its boxes; this project runs
``anonymize_video`` at the defaults with ``--method solid`` (what ``python -m
model anonymize --method solid`` does), its boxes recorded at a low threshold
so that the other thresholds and holds are replayed from them (the tracker
included). The table gives, side by side: ground-truth faces (hard lists, at
least 10 pixels, inside the frame) left visible per 1,000 face-frames (under
90 % of the box hidden), the share of the frames outside every ground-truth
face hidden anyway (over-masking), frames/s, and whether frame count, frame
rate, size, duration and audio survive.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

import av
import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from model.anonymize import AnonymizeOptions, face_mask
from model.detector import Detector
from model.eval import WiderSplit, load_split
from model.eval.split import HALVES
from model.options import PRIVACY, PostprocessOptions, ScalePolicy
from model.postprocess import above_thresholds
from model.runtime import tune_allocator
from model.tracking import FaceTracks
from model.video import VideoOptions, anonymize_video, probe
from tools import data
from tools.deface import DETECT, LOWEST, MASK_SCALE, THRESHOLD, deface_mask

SIZE, RATE = (1920, 1080), 25
HIDDEN, MIN_FACE = 0.9, 10
SOLID = AnonymizeOptions(method="solid")
HOLDS = (0, 1, 2, 4, 6, 8)


def crowd_photos(split: WiderSplit, count: int) -> list[tuple[Path, np.ndarray]]:
    """The split's photos with the most hard-set faces of 10 pixels and more."""
    ranked = []
    for name in split.images:
        listed = split.lists["hard"][name]
        boxes = split.boxes[name][listed - 1] if len(listed) else np.zeros((0, 4))
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
        "size": (a.width, a.height) == (b.width, b.height),
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


@dataclass
class Frame:
    """A replayed frame: its index and the faces found in it."""

    index: int
    faces: np.ndarray


def replay(found: list[np.ndarray], scale: float, options: PostprocessOptions, hold: int):
    """The boxes each frame hides at ``options`` and ``hold``: the recorded boxes cut at the
    thresholds, then through the tracker, as ``anonymize_video`` does."""
    frames = [Frame(i, above_thresholds(torch.from_numpy(f), options, scale).numpy())
              for i, f in enumerate(found)]  # fmt: skip
    tracks = FaceTracks[Frame](hold)
    return [faces for _, faces in [*tracks.add(frames), *tracks.flush()]]


def recorder(detector: Detector, found: list[np.ndarray]):
    """``Detector.run`` at the lowest threshold, each frame's boxes appended to ``found``,
    then cut as asked (what a run at those options returns)."""
    low = PostprocessOptions(score_threshold=LOWEST, max_faces=0)

    def run(items, options):
        faces = detector.run(items, [low] * len(items))
        found.extend(faces)
        return [above_thresholds(torch.from_numpy(f), o, item.plan.scale).numpy()
                for f, o, item in zip(faces, options, items, strict=True)]  # fmt: skip

    return run


def run_deface(python: str, clip: Path, folder: Path) -> tuple[list[np.ndarray], float, str]:
    """deface's boxes per frame, its frames/s through its command and what its output kept."""
    out = folder / "deface.mp4"
    start = time.perf_counter()
    command = Path(python).parent / "deface"
    subprocess.run(
        [str(command), str(clip), "-o", str(out), "--replacewith", "solid", "--keep-audio"],
        check=True,
        capture_output=True,
    )
    fps = probe(clip).frames / (time.perf_counter() - start)
    request = folder / "request.json"
    request.write_text(json.dumps({"clip": str(clip), "out": str(folder / "dets.npz")}))
    subprocess.run([python, "-c", DETECT, str(request)], check=True, capture_output=True)
    with np.load(folder / "dets.npz") as saved:
        dets = [saved[f"dets_{i}"] for i in range(probe(clip).frames)]
    return dets, fps, survives(clip, out)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--deface-python", help="the python of a venv with deface installed")
    parser.add_argument("--photos", type=int, default=3, help="per clip")
    parser.add_argument("--seconds", type=float, default=2.0, help="per photo")
    parser.add_argument("--backend", default="auto")
    args = parser.parse_args()
    tune_allocator()
    split = load_split(data.require(*data.DEV_SPLIT))
    detector = Detector(data.require("weights", "EXTD_64.pth"), backend=args.backend)
    print("| clip | tool: setting | face-frames left visible per 1,000 | over-masking | "
          "frames/s | the output |\n| --- | --- | --- | --- | --- | --- |")  # fmt: skip
    for half in HALVES:
        with tempfile.TemporaryDirectory() as scratch:
            folder = Path(scratch)
            clip = folder / "clip.mp4"
            truth = make_clip(clip, crowd_photos(split.half(half), args.photos), args.seconds)
            info = probe(clip)
            label = f"{half}: {info.frames} frames, {info.duration_s:.0f} s"
            shape = (info.height, info.width)
            if args.deface_python:
                dets, fps, kept = run_deface(args.deface_python, clip, folder)
                for kind, ellipse in (("defaults", True), ("--replacewith solid", False)):
                    masks = [deface_mask(d[d[:, 4] > THRESHOLD], shape, MASK_SCALE, ellipse)
                             for d in dets]  # fmt: skip
                    shown = (fps, kept) if not ellipse else (None, "")
                    name = f"{label} | deface 1.5.0 {kind}"
                    print(row(name, *leaks(truth, masks), *shown), flush=True)
            found: list[np.ndarray] = []
            recorded = recorder(detector, found)

            ours = folder / "ours.mp4"
            start = time.perf_counter()
            with tqdm(total=info.frames, unit="frame", desc=half, leave=False) as bar:
                anonymize_video(
                    clip, ours, detector, options=PRIVACY, policy=ScalePolicy(), hiding=SOLID,
                    video=VideoOptions(), run=recorded,
                    progress=lambda done: bar.update(done - bar.n),
                )  # fmt: skip
            fps = info.frames / (time.perf_counter() - start)
            scale = detector.plan(shape, ScalePolicy()).scale
            settings = [(PRIVACY, hold) for hold in HOLDS]
            settings += [(replace(PRIVACY, small_face_threshold=None), VideoOptions().hold)]
            for options, hold in settings:
                masks = [face_mask(shape, faces, SOLID, input_scale=scale)
                         for faces in replay(found, scale, options, hold)]  # fmt: skip
                where = "" if options.small_face_threshold else ", no small-face threshold"
                default = (options, hold) == (PRIVACY, VideoOptions().hold)
                name = f"{label} | EXTD-64 ({detector.backend.name}): hold {hold}{where}"
                print(row(name + (" (defaults)" if default else ""), *leaks(truth, masks),
                          fps if default else None, survives(clip, ours) if default else ""),
                      flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
