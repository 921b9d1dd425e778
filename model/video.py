"""Anonymizing videos: every frame's faces hidden, its frames, timing and audio kept.

Decoding and encoding are PyAV's (FFmpeg inside its wheel: the ``video``
extra). Frames go through the Detector in batches. A face found in frame
``t`` is also hidden in the ``hold`` frames before and after it that miss it
(a look-ahead buffer), so a face the network misses for a frame or two does
not flash into view. Each output frame carries its input frame's timestamp, so the frame
count, the frame rate (constant or variable) and the duration stay as they
were; audio streams are copied packet for packet; a rotation flag is applied
to the pixels (the output is stored upright, and plays the same).
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch

from model.anonymize import AnonymizeOptions, anonymize
from model.boxes import box_iou
from model.detector import Detector
from model.errors import ExtdError, OptionsError
from model.files import atomic_path
from model.inputs import prepare
from model.options import PostprocessOptions, ScalePolicy, described

log = logging.getLogger(__name__)

VIDEO_SUFFIXES = (".mp4", ".mov", ".m4v", ".mkv", ".webm", ".avi")
# Output codec and quality by container: H.264 where it is at home, VP9 in WebM, MPEG-4 part 2
# in AVI (which cannot keep H.264's reordered timestamps).
_CODECS = {".webm": ("libvpx-vp9", 32), ".avi": ("mpeg4", 3)}
_DEFAULT_CODEC = ("libx264", 20)
_QP2LAMBDA = 118  # FFmpeg's scale of a quantizer as global quality
_BATCH = 8  # frames per forward pass
# A neighbour's face overlapping a nearer frame's face this much is the same face, moved.
SAME_FACE_IOU = 0.3


class VideoError(ExtdError, reason="unsupported_video"):
    """The input is not a video this build can read, or it is corrupt or truncated."""


class Cancelled(ExtdError, reason="cancelled"):
    """The caller asked to stop (a cancelled job)."""


@dataclass(frozen=True)
class VideoOptions:
    """How a video is written."""

    hold: int = described(
        2,
        "a face found in a frame stays hidden this many frames before and after it, so a face "
        "missed for a frame or two does not show",
    )
    codec: str | None = described(
        None, "video codec of the output", unset="libx264; libvpx-vp9 for .webm"
    )
    crf: int | None = described(
        None,
        "quality: lower is better and larger (for MPEG-4 in AVI, its quantizer)",
        unset="20 for x264, 32 for VP9, 3 for MPEG-4",
    )

    def __post_init__(self) -> None:
        if not 0 <= self.hold <= 30:
            raise OptionsError(f"hold must be from 0 to 30 frames, got {self.hold}")
        if self.crf is not None and not 0 <= self.crf <= 63:
            raise OptionsError(f"crf must be from 0 to 63, got {self.crf}")


@dataclass(frozen=True)
class VideoInfo:
    """What a video holds, as played (width and height upright)."""

    frames: int
    rate: Fraction
    duration_s: float
    width: int
    height: int
    rotation: int  # degrees counter-clockwise the stored frames are turned for display
    codec: str
    audio_streams: int
    container: str  # FFmpeg's names of the format, e.g. "mov,mp4,m4a,3gp,3g2,mj2"


def _av():
    try:
        import av
    except ImportError as error:
        raise VideoError("videos need PyAV: pip install 'extd-face[video]'") from error
    return av


def is_video(path: Path) -> bool:
    return path.suffix.lower() in VIDEO_SUFFIXES


def probe(path: Path) -> VideoInfo:
    """Read the container and decode its first frame (the rotation is carried by frames)."""
    av = _av()
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise VideoError(f"{path.name}: no video stream")
            stream = container.streams.video[0]
            first = next(container.decode(stream), None)
            if first is None:
                raise VideoError(f"{path.name}: no frame could be decoded")
            rotation = _quarter_turns(first.rotation) * 90
            width, height = first.width, first.height
            if rotation in (90, 270):
                width, height = height, width
            duration = (
                float(stream.duration * stream.time_base)
                if stream.duration
                else (container.duration or 0) / 1_000_000
            )
            return VideoInfo(
                frames=stream.frames or round(duration * float(stream.average_rate or 0)),
                rate=Fraction(stream.average_rate or stream.guessed_rate or 0),
                duration_s=duration,
                width=width,
                height=height,
                rotation=rotation,
                codec=stream.codec_context.name,
                audio_streams=len(container.streams.audio),
                container=container.format.name,
            )
    except av.error.FFmpegError as error:
        raise VideoError(f"{path.name}: not a readable video ({error})") from error


def _quarter_turns(rotation: float | None) -> int:
    return round((rotation or 0) / 90) % 4


@dataclass
class _Frame:
    index: int
    pts: int | None
    pixels: np.ndarray  # upright RGB
    faces: np.ndarray | None = None


def held_faces(own: np.ndarray, before: list[np.ndarray], after: list[np.ndarray]) -> np.ndarray:
    """A frame's faces, plus those of the frames ``before`` and ``after`` it (nearest first)
    that match none of the nearer frames' faces on their side: a face missed here is hidden
    where the nearest frames on each side saw it, and a face found here is not hidden again
    at every place it moves through (on a panning camera, that union more than doubled the
    hidden area)."""
    kept = [own]
    for side in (before, after):
        seen = own
        for faces in side:
            if len(faces) and len(seen):
                same = box_iou(torch.from_numpy(faces[:, :4]), torch.from_numpy(seen[:, :4]))
                kept.append(faces[same.amax(dim=1).numpy() < SAME_FACE_IOU])
            else:
                kept.append(faces)
            seen = np.concatenate([seen, faces])
    return np.concatenate(kept)


class _Hold:
    """Frames wait here until the ``hold`` frames after them are detected; each leaves with
    the faces its neighbours within ``hold`` saw and it missed (:func:`held_faces`)."""

    def __init__(self, hold: int) -> None:
        self.hold = hold
        self._waiting: deque[_Frame] = deque()
        self._faces: dict[int, np.ndarray] = {}

    def add(self, frames: list[_Frame]) -> Iterator[tuple[_Frame, np.ndarray]]:
        for frame in frames:
            self._faces[frame.index] = frame.faces
            self._waiting.append(frame)
        last = frames[-1].index
        while self._waiting and self._waiting[0].index + self.hold <= last:
            yield self._leave()

    def flush(self) -> Iterator[tuple[_Frame, np.ndarray]]:
        while self._waiting:
            yield self._leave()

    def _leave(self) -> tuple[_Frame, np.ndarray]:
        frame = self._waiting.popleft()
        faces = held_faces(frame.faces, *neighbours(self._faces, frame.index, self.hold))
        self._faces.pop(frame.index - self.hold, None)
        return frame, faces


def neighbours(
    faces: dict[int, np.ndarray], index: int, hold: int
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """The faces of the ``hold`` frames before ``index`` and after it, nearest first."""
    before = [faces[index - d] for d in range(1, hold + 1) if index - d in faces]
    after = [faces[index + d] for d in range(1, hold + 1) if index + d in faces]
    return before, after


def anonymize_video(
    source: Path,
    target: Path,
    detector: Detector,
    *,
    options: PostprocessOptions,
    policy: ScalePolicy,
    hiding: AnonymizeOptions,
    video: VideoOptions,
    progress: Callable[[int], None] | None = None,
    cancelled: Callable[[], bool] | None = None,
    hidden: Callable[[int, np.ndarray], None] | None = None,
) -> int:
    """Write ``source`` with every face hidden to ``target`` (atomically; its suffix picks the
    container); returns the frames written. ``progress`` is told the frames done so far;
    ``cancelled`` is asked between batches; ``hidden`` is told each frame's hidden boxes
    (upright pixels; what a benchmark measures)."""
    av = _av()
    codec, crf = _CODECS.get(target.suffix.lower(), _DEFAULT_CODEC)
    codec, crf = video.codec or codec, video.crf if video.crf is not None else crf
    info = probe(source)  # the upright size, before any packet is written
    written = 0
    try:
        with av.open(str(source)) as inp, atomic_path(target) as scratch:
            if not inp.streams.video:
                raise VideoError(f"{source.name}: no video stream")
            vin = inp.streams.video[0]
            vin.thread_type = "AUTO"
            audio = list(inp.streams.audio)
            fmt = {".m4v": "mp4", ".mkv": "matroska"}.get(target.suffix.lower())
            with av.open(str(scratch), "w", format=fmt or target.suffix.lstrip(".")) as out:
                vout = _video_stream(out, vin, codec, crf, (info.height, info.width))
                copies = {a.index: out.add_stream_from_template(a) for a in audio}
                hold, batch = _Hold(video.hold), []
                index = 0

                def flush(frames: list[_Frame]) -> Iterator[tuple[_Frame, np.ndarray]]:
                    if cancelled and cancelled():
                        raise Cancelled("cancelled")
                    items = [prepare(f.pixels, detector.plan(f.pixels.shape[:2], policy))
                             for f in frames]  # fmt: skip
                    for frame, faces in zip(frames, detector.run(items, [options] * len(items)),
                                            strict=True):  # fmt: skip
                        frame.faces = faces
                    return hold.add(frames)

                def write(done: Iterator[tuple[_Frame, np.ndarray]]) -> None:
                    nonlocal written
                    for frame, faces in done:
                        if hidden:
                            hidden(frame.index, faces)
                        picture = av.VideoFrame.from_ndarray(
                            anonymize(frame.pixels, faces, hiding), format="rgb24"
                        )
                        picture.pts, picture.time_base = frame.pts, vin.time_base
                        for packet in vout.encode(picture):
                            out.mux(packet)
                        written += 1
                        if progress:
                            progress(written)

                for packet in inp.demux(vin, *audio):
                    if packet.stream.type == "audio":
                        if packet.dts is not None:
                            packet.stream = copies[packet.stream.index]
                            out.mux(packet)
                        continue
                    for decoded in packet.decode():
                        pixels = np.rot90(
                            decoded.to_ndarray(format="rgb24"), _quarter_turns(decoded.rotation)
                        )
                        pts = decoded.pts if decoded.pts is not None else _pts(index, vin)
                        batch.append(_Frame(index, pts, np.ascontiguousarray(pixels)))
                        index += 1
                        if len(batch) == _BATCH:
                            write(flush(batch))
                            batch = []
                if batch:
                    write(flush(batch))
                write(hold.flush())
                for packet in vout.encode(None):
                    out.mux(packet)
    except av.error.FFmpegError as error:
        raise VideoError(f"{source.name}: {error}") from error
    return written


def _video_stream(out, vin, codec: str, crf: int, size: tuple[int, int]):
    """The output's video stream: the input's frame rate and time base, ``size`` upright."""
    stream = out.add_stream(codec, rate=vin.average_rate or vin.guessed_rate or 25)
    stream.height, stream.width = size
    stream.pix_fmt = "yuv420p"
    stream.time_base = vin.time_base
    if codec == "mpeg4":
        stream.codec_context.flags |= _av().codec.context.Flags.qscale
        stream.codec_context.global_quality = crf * _QP2LAMBDA
        return stream
    options = {"crf": str(crf)}
    if codec in ("libx264", "libx265"):
        options["preset"] = "veryfast"
    elif codec == "libvpx-vp9":
        options |= {"b": "0", "deadline": "realtime", "cpu-used": "8", "row-mt": "1"}
    stream.options = options
    return stream


def _pts(index: int, vin) -> int:
    """A timestamp for a frame that came without one: its place at the stream's rate."""
    rate = vin.average_rate or vin.guessed_rate or 25
    return round(index / rate / vin.time_base)
