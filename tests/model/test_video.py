"""Anonymizing videos: frames, timestamps, duration, audio and rotation kept; every frame hidden."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import samples

from model.anonymize import AnonymizeOptions, face_mask
from model.checkpoint import Checkpoint
from model.detector import Detector
from model.errors import OptionsError
from model.inputs import prepare
from model.network import EXTD
from model.options import PostprocessOptions, ScalePolicy
from model.variants import Variant

av = pytest.importorskip("av", reason="needs the video extra: pip install 'extd-face[video]'")

from model.video import (  # noqa: E402
    VideoError,
    VideoOptions,
    anonymize_video,
    held_faces,
    neighbours,
    probe,
)

GREEN = AnonymizeOptions(method="solid", color="#00ff00", shape="box", mask_scale=1.0)
# A random network at a low threshold: boxes in every frame, no data needed.
FIND = PostprocessOptions(score_threshold=0.2, max_faces=6)


@pytest.fixture(scope="module")
def detector() -> Detector:
    import torch

    torch.manual_seed(0)
    network = EXTD(Variant.parse("fpn-32-prelu")).eval()
    return Detector(Checkpoint.from_network(network), backend="torch")


def frames_of(path: Path) -> tuple[list[np.ndarray], list[int]]:
    with av.open(str(path)) as container:
        decoded = list(container.decode(container.streams.video[0]))
    return [f.to_ndarray(format="rgb24") for f in decoded], [f.pts for f in decoded]


def audio_of(path: Path) -> list[tuple[str, int]]:
    with av.open(str(path)) as container:
        streams = container.streams.audio
        return [
            (s.codec_context.name, sum(p.size for p in container.demux(s) if p.size))
            for s in streams
        ]


def run(detector, source: Path, target: Path, **video) -> int:
    return anonymize_video(
        source,
        target,
        detector,
        options=FIND,
        policy=ScalePolicy(),
        hiding=GREEN,
        video=VideoOptions(**video),
    )


@pytest.mark.parametrize(
    ("name", "codec", "audio"),
    [
        ("clip.mp4", "libx264", "aac"),
        ("clip.mkv", "libx264", "aac"),
        ("clip.webm", "libvpx-vp9", "libopus"),
        ("clip.mov", "libx264", None),
        ("clip.avi", "mpeg4", None),
    ],
)
def test_frames_timing_and_audio_are_kept(detector, tmp_path, name, codec, audio):
    source = samples.video(tmp_path / name, codec=codec, audio=audio, frames=20)
    target = tmp_path / "out" / name
    assert run(detector, source, target) == 20
    before, after = probe(source), probe(target)
    assert after.frames == before.frames == 20
    assert after.rate == before.rate == Fraction(12)
    assert abs(after.duration_s - before.duration_s) <= 1 / 12
    assert frames_of(target)[1] == frames_of(source)[1]  # the same timestamps
    assert audio_of(target) == audio_of(source)  # the same packets, byte for byte


def test_every_frame_is_hidden_where_the_photo_path_hides_it(detector, tmp_path):
    """With no hold, each output frame's hidden boxes are the detector's on that frame."""
    source = samples.video(tmp_path / "clip.mp4", frames=10, audio=None, size=(192, 128))
    target = tmp_path / "hidden.mp4"
    run(detector, source, target, hold=0, crf=0)
    inputs, _ = frames_of(source)
    outputs, _ = frames_of(target)
    hidden_frames = 0
    for pixels, hidden in zip(inputs, outputs, strict=True):
        item = prepare(pixels, detector.plan(pixels.shape[:2], ScalePolicy()))
        (faces,) = detector.run([item], [FIND])
        mask = face_mask(pixels.shape[:2], faces, GREEN)
        if not mask.any():
            continue
        hidden_frames += 1
        green = np.abs(hidden[mask].astype(int) - [0, 255, 0]).max(axis=1) < 40
        assert green.mean() > 0.95
    assert hidden_frames >= 5


def test_hold_hides_a_face_in_the_neighbouring_frames(detector, tmp_path):
    source = samples.video(tmp_path / "clip.mp4", frames=12, audio=None)
    masks = {}
    for hold in (0, 3):
        target = tmp_path / f"hold-{hold}.mp4"
        run(detector, source, target, hold=hold, crf=0)
        frames, _ = frames_of(target)
        masks[hold] = [(np.abs(f.astype(int) - [0, 255, 0]).max(axis=2) < 40) for f in frames]
    for without, with_hold in zip(masks[0], masks[3], strict=True):
        assert with_hold.sum() >= without.sum()  # a superset, give or take the codec
    assert sum(m.sum() for m in masks[3]) > sum(m.sum() for m in masks[0])


def test_held_faces_fill_a_miss_and_nothing_else():
    face = np.array([[10, 10, 30, 30, 0.9]], np.float32)
    step = np.array([4, 0, 4, 0, 0], np.float32)  # a frame's move: IoU 0.67 with the last
    other = np.array([[60, 10, 80, 30, 0.8]], np.float32)
    none = np.zeros((0, 5), np.float32)
    # Found here: the neighbours' copies of it are not added; a face only they saw is.
    held = held_faces(face, [face - step, face - 2 * step], [face + step, other])
    np.testing.assert_array_equal(held, np.concatenate([face, other]))
    # Missed here: the nearest sighting on each side is added; the farther ones match those.
    held = held_faces(none, [face - step, face - 2 * step], [face + step, face + 2 * step])
    np.testing.assert_array_equal(held, np.concatenate([face - step, face + step]))
    before, after = neighbours({0: face, 1: none, 3: other}, 1, 2)
    assert [len(f) for f in before] == [1]
    assert [len(f) for f in after] == [1]  # frame 2 is not there, frame 3 is


def test_a_rotated_video_comes_out_upright(detector, tmp_path):
    source = samples.video(tmp_path / "phone.mp4", size=(160, 96), rotation=90, frames=6)
    assert (probe(source).width, probe(source).height, probe(source).rotation) == (96, 160, 90)
    target = tmp_path / "out.mp4"
    run(detector, source, target)
    after = probe(target)
    assert (after.width, after.height, after.rotation) == (96, 160, 0)
    stored = frames_of(source)[0][0]
    upright = frames_of(target)[0][0]
    # Counter-clockwise by a quarter turn: the stored top row is the upright left column.
    unhidden = np.abs(upright.astype(int) - [0, 255, 0]).max(axis=2) >= 40
    difference = np.abs(np.rot90(stored).astype(int) - upright.astype(int)).max(axis=2)
    assert np.median(difference[unhidden]) < 12


def test_bad_videos_are_clear_errors_and_leave_nothing(detector, tmp_path):
    text = tmp_path / "notes.mp4"
    text.write_text("not a video")
    source = samples.video(tmp_path / "clip.mp4", frames=24)
    truncated = tmp_path / "cut.mp4"
    truncated.write_bytes(source.read_bytes()[: source.stat().st_size // 3])
    out = tmp_path / "out"
    for bad in (text, truncated):
        with pytest.raises(VideoError):
            run(detector, bad, out / bad.name)
    assert not out.exists() or not any(out.iterdir())


def test_bad_video_options():
    with pytest.raises(OptionsError, match="hold"):
        VideoOptions(hold=-1)
    with pytest.raises(OptionsError, match="crf"):
        VideoOptions(crf=99)
