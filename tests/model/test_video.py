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
    FrameTooLargeError,
    VideoError,
    VideoLimits,
    VideoOptions,
    VideoTooLongError,
    anonymize_video,
    probe,
)

GREEN = AnonymizeOptions(
    method="solid", color="#00ff00", shape="box", mask_scale=1.0, mask_margin=0.0
)
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


NO_LIMITS = VideoLimits()


def run(detector, source: Path, target: Path, limits: VideoLimits = NO_LIMITS, **video) -> int:
    return anonymize_video(
        source,
        target,
        detector,
        options=FIND,
        policy=ScalePolicy(),
        hiding=GREEN,
        video=VideoOptions(**video),
        limits=limits,
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


TEN_SECONDS = VideoLimits(max_seconds=10)


@pytest.mark.parametrize(
    "make", [samples.lying_duration_mp4, samples.piped_matroska], ids=["lying", "piped"]
)
def test_the_duration_is_what_the_frames_play_not_what_the_header_says(detector, tmp_path, make):
    """A 60 s video whose header says 1 s, or nothing: it passes the header check and fails
    once its decoded timestamps pass the limit, leaving no file."""
    source = make(tmp_path / f"sixty{'.mkv' if make is samples.piped_matroska else '.mp4'}")
    assert probe(source, TEN_SECONDS).duration_s <= 1  # the header is believed ...
    done: list[int] = []
    with pytest.raises(VideoTooLongError, match="found while decoding"):
        anonymize_video(
            source,
            tmp_path / "out" / source.name,
            detector,
            options=FIND,
            policy=ScalePolicy(),
            hiding=GREEN,
            video=VideoOptions(),
            progress=done.append,
            limits=TEN_SECONDS,
        )
    assert max(done) <= 10 * 5  # ... until the frames say otherwise: stopped at the limit
    assert not any((tmp_path / "out").iterdir())


def test_a_stream_without_a_duration_gets_an_estimated_frame_count(tmp_path):
    info = probe(samples.piped_matroska(tmp_path / "piped.mkv", seconds=20))
    assert (info.duration_s, info.frames_listed) == (0, False)
    assert 50 <= info.frames <= 200  # 100 frames in truth


def test_a_truncated_video_is_an_error_not_half_a_result(detector, tmp_path):
    source = samples.half_of_a_faststart_mp4(tmp_path / "half.mp4")
    assert probe(source).frames == 100  # its index is whole
    with pytest.raises(VideoError, match="truncated"):
        run(detector, source, tmp_path / "out" / "half.mp4")
    assert not any((tmp_path / "out").iterdir())


def test_frames_over_the_pixel_limit_are_refused(detector, tmp_path):
    source = samples.video(tmp_path / "clip.mp4", frames=4, size=(160, 120))
    with pytest.raises(FrameTooLargeError, match="160x120"):
        probe(source, VideoLimits(max_pixels=160 * 120 - 1))
    assert probe(source, VideoLimits(max_pixels=160 * 120)).width == 160


@pytest.mark.parametrize(
    ("name", "make"),
    [
        ("photo.mp4", lambda path: path.write_bytes(samples.photo()) and path),
        ("anim.mp4", lambda path: path.write_bytes(samples.animation("GIF")) and path),
        ("stream.mp4", samples.raw_h264),
    ],
)
def test_the_container_comes_from_the_bytes_not_the_name(tmp_path, name, make):
    path = tmp_path / name
    make(path)
    with pytest.raises(VideoError, match="not a video container") as refused:
        probe(path)
    assert str(tmp_path) not in str(refused.value)


def test_errors_name_no_file(tmp_path):
    hidden = tmp_path / "secret-folder"
    hidden.mkdir()
    for payload in (b"not a video", b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 64):
        path = hidden / "upload.mp4"
        path.write_bytes(payload)
        with pytest.raises(VideoError) as refused:
            probe(path)
        assert "secret-folder" not in str(refused.value)
        assert "upload" not in str(refused.value)


def test_a_result_keeps_the_container_its_upload_has(tmp_path):
    info = probe(samples.video(tmp_path / "clip.mkv", frames=4))
    assert info.container == "matroska"
    assert (info.suffix("clip.webm"), info.suffix("clip.mp4"), info.suffix(None)) == (
        ".webm",
        ".mkv",
        ".mkv",
    )
