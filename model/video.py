"""Anonymizing videos: every frame's faces hidden, its frames, timing and audio kept.

Decoding and encoding are PyAV's (FFmpeg inside its wheel: the ``video``
extra). Frames go through the Detector in batches. Faces are tracked across
frames (:mod:`model.tracking`, ByteTrack): a face found in frame ``t`` stays
hidden where it moves in the frames that miss it, up to ``hold`` frames away
(a look-ahead buffer), so a face the network misses for a frame or two does
not flash into view. Each output frame carries its input frame's timestamp, so the frame
count, the frame rate (constant or variable) and the duration stay as they
were; audio streams are copied packet for packet; a rotation flag is applied
to the pixels (the output is stored upright, and plays the same).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from model.anonymize import AnonymizeOptions, anonymize
from model.detector import Detector, Protocol
from model.errors import ExtdError, OptionsError
from model.files import atomic_path
from model.inputs import PreparedImage, prepare
from model.options import PostprocessOptions, ScalePolicy, described
from model.paper_protocol import merge_found
from model.tracking import FaceTracks

log = logging.getLogger(__name__)

VIDEO_SUFFIXES = (".mp4", ".mov", ".m4v", ".mkv", ".webm", ".avi")
# The containers read here, by FFmpeg's demuxer (found from the file's bytes, never its name),
# and the suffixes a result may be written with, the first the default.
CONTAINERS = {"mov": (".mp4", ".mov", ".m4v"), "matroska": (".mkv", ".webm"), "avi": (".avi",)}
# No camera records more frames a second: a video is cut off after this many frames per second
# of its duration limit, whatever its timestamps say.
MAX_FRAME_RATE = 240
# Output codec and quality by container: H.264 where it is at home, VP9 in WebM, MPEG-4 part 2
# in AVI (which cannot keep H.264's reordered timestamps).
_CODECS = {".webm": ("libvpx-vp9", 32), ".avi": ("mpeg4", 3)}
_DEFAULT_CODEC = ("libx264", 20)
_QP2LAMBDA = 118  # FFmpeg's scale of a quantizer as global quality
# Frames decoded and detected at once: at most _BATCH, fewer when frames are large, so the
# pixels held stay near those of a batch of 1080p frames.
_BATCH, _BATCH_PIXELS = 8, 8 * 1920 * 1080
# Finds the faces of prepared frames: Detector.run, or a service's model runner.
Runner = Callable[[Sequence[PreparedImage], Sequence[PostprocessOptions]], list[np.ndarray]]


class VideoError(ExtdError, reason="unsupported_video"):
    """The input is not a video this build can read, or it is corrupt or truncated."""


class VideoTooLongError(VideoError, reason="video_too_long"):
    """The video lasts longer than allowed: said by its header, or found while decoding."""


class FrameTooLargeError(VideoError, reason="video_frame_too_large"):
    """The video's frames hold more pixels than allowed."""


class Cancelled(ExtdError, reason="cancelled"):
    """The caller asked to stop (a cancelled job)."""


@dataclass(frozen=True)
class VideoLimits:
    """What an untrusted video may hold: checked from its header, then again on every decoded
    frame (a header can lie about the duration, and a stream can change its frame size)."""

    max_seconds: float | None = None
    max_pixels: int | None = None  # per frame

    def check_size(self, width: int, height: int) -> None:
        if self.max_pixels is not None and width * height > self.max_pixels:
            raise FrameTooLargeError(
                f"the video's frames are {width}x{height} = {width * height} pixels, over the "
                f"limit of {self.max_pixels}"
            )

    def check_duration(self, seconds: float, frames: int = 0) -> None:
        """``seconds`` played so far (or declared), ``frames`` decoded so far."""
        limit = self.max_seconds
        if limit is not None and (seconds > limit or frames > limit * MAX_FRAME_RATE):
            raise VideoTooLongError(
                f"the video lasts more than the limit of {limit:g} s"
                + (f" (found while decoding, after {frames} frames)" if frames else "")
            )


@dataclass(frozen=True)
class VideoOptions:
    """How a video is written."""

    # Chosen on a clip made from the tuning half of the dev split: the shortest hold that leaks
    # at least 25 % fewer face-frames than deface --replacewith solid (bench/anonymize_video.py,
    # docs/anonymization.md).
    hold: int = described(
        4,
        "a face found in a frame stays hidden, where it moves, in the frames up to this many "
        "before and after it that miss it, so a face missed for a few frames does not show",
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

    frames: int  # as the container lists them, else estimated from the file's size
    frames_listed: bool  # the container lists its frames: fewer decoded means truncation
    rate: Fraction
    duration_s: float
    width: int
    height: int
    rotation: int  # degrees counter-clockwise the stored frames are turned for display
    codec: str
    audio_streams: int
    container: str  # FFmpeg's demuxer, a key of CONTAINERS

    def suffix(self, name: str | None = None) -> str:
        """The suffix to write it back with: ``name``'s, if it fits the container."""
        suffixes = CONTAINERS[self.container]
        own = Path(name or "").suffix.lower()
        return own if own in suffixes else suffixes[0]


def _av():
    try:
        import av
    except ImportError as error:
        raise VideoError("videos need PyAV: pip install 'extd-face[video]'") from error
    return av


def is_video(path: Path) -> bool:
    return path.suffix.lower() in VIDEO_SUFFIXES


def probe(path: Path, limits: VideoLimits = VideoLimits()) -> VideoInfo:
    """Read the container (recognised from the bytes) and decode its first frame (the rotation
    is carried by frames); refuse what ``limits`` rule out from the header. Error messages
    name no file: the caller knows which it is."""
    av = _av()
    try:
        with open(path, "rb") as handle, av.open(handle) as container:
            demuxer = container.format.name.split(",")[0]
            if demuxer not in CONTAINERS:
                raise VideoError(
                    f"the file is {container.format.long_name}, not a video container read here "
                    "(mp4, mov, mkv, webm, avi)"
                )
            if not container.streams.video:
                raise VideoError("the file holds no video stream")
            stream = container.streams.video[0]
            limits.check_size(stream.codec_context.width, stream.codec_context.height)
            first = next(container.decode(stream), None)
            if first is None:
                raise VideoError("no frame of the video could be decoded")
            limits.check_size(first.width, first.height)
            rotation = _quarter_turns(first.rotation) * 90
            width, height = first.width, first.height
            if rotation in (90, 270):
                width, height = height, width
            duration = (
                float(stream.duration * stream.time_base)
                if stream.duration
                else (container.duration or 0) / 1_000_000
            )
            limits.check_duration(duration)
            rate = Fraction(stream.average_rate or stream.guessed_rate or 0)
            frames = stream.frames or round(duration * rate) or _estimate_frames(path, rate)
            return VideoInfo(
                frames=frames,
                frames_listed=bool(stream.frames),
                rate=rate,
                duration_s=duration,
                width=width,
                height=height,
                rotation=rotation,
                codec=stream.codec_context.name,
                audio_streams=len(container.streams.audio),
                container=demuxer,
            )
    except (av.error.FFmpegError, OSError) as error:
        raise VideoError(f"not a readable video ({_reason(error)})") from error


def _reason(error: Exception) -> str:
    """FFmpeg's or the system's reason, without the file name it may carry."""
    return getattr(error, "strerror", None) or type(error).__name__


def _estimate_frames(path: Path, rate: Fraction, packets: int = 120) -> int:
    """Frames of a stream whose container says nothing of its length (a pipe's Matroska):
    the file's size over the bytes a second its first packets take, at its frame rate."""
    av = _av()
    size, first, last, timed = path.stat().st_size, None, None, 0
    with av.open(str(path)) as container:
        for count, packet in enumerate(container.demux()):
            if count >= packets:
                break
            timed += packet.size
            if packet.pts is not None and packet.time_base is not None:
                at = float(packet.pts * packet.time_base)
                first = at if first is None else min(first, at)
                last = at if last is None else max(last, at)
    if first is None or last is None or last <= first or not rate:
        return 0
    return round(size / (timed / (last - first)) * float(rate))


def _quarter_turns(rotation: float | None) -> int:
    return round((rotation or 0) / 90) % 4


@dataclass
class _Frame:
    index: int
    pts: int | None
    pixels: np.ndarray  # upright RGB
    faces: np.ndarray | None = None


def anonymize_video(
    source: Path,
    target: Path,
    detector: Detector,
    *,
    options: PostprocessOptions,
    policy: ScalePolicy,
    hiding: AnonymizeOptions,
    video: VideoOptions,
    run: Runner | None = None,
    protocol: Protocol = "single",
    progress: Callable[[int], None] | None = None,
    cancelled: Callable[[], bool] | None = None,
    hidden: Callable[[int, np.ndarray], None] | None = None,
    limits: VideoLimits = VideoLimits(),
) -> int:
    """Write ``source`` with every face hidden to ``target`` (atomically; its suffix picks the
    container); returns the frames written. Frames and timestamps are checked against
    ``limits`` as they are decoded; a video with fewer frames than its container lists is
    refused (truncated). ``detector`` plans each frame's input; ``run``
    finds the faces of prepared frames (default: ``detector.run``; the service passes its
    batcher's background lane); ``protocol="paper"`` runs each frame's passes of the paper
    protocol through it and merges them (about 5 times the work). ``progress`` is told the
    frames done so far; ``cancelled`` is asked between batches; ``hidden`` is told each
    frame's hidden boxes (upright pixels; what a benchmark measures)."""
    av = _av()
    codec, crf = _CODECS.get(target.suffix.lower(), _DEFAULT_CODEC)
    codec, crf = video.codec or codec, video.crf if video.crf is not None else crf
    info = probe(source, limits)  # the upright size, before any packet is written
    run = run or detector.run
    input_scale = detector.plan((info.height, info.width), policy).scale
    per_batch = max(1, min(_BATCH, _BATCH_PIXELS // (info.width * info.height)))
    written = 0
    try:
        # The demuxer the bytes were recognised as, whatever the file is called.
        with av.open(str(source), format=info.container) as inp, atomic_path(target) as scratch:
            vin = inp.streams.video[0]
            vin.thread_type = "AUTO"
            audio = list(inp.streams.audio)
            fmt = {".m4v": "mp4", ".mkv": "matroska"}.get(target.suffix.lower())
            with av.open(str(scratch), "w", format=fmt or target.suffix.lstrip(".")) as out:
                vout = _video_stream(out, vin, codec, crf, (info.height, info.width))
                copies = {a.index: out.add_stream_from_template(a) for a in audio}
                hold, batch = FaceTracks[_Frame](video.hold), []
                index, start = 0, None

                def flush(frames: list[_Frame]) -> Iterator[tuple[_Frame, np.ndarray]]:
                    if cancelled and cancelled():
                        raise Cancelled("cancelled")
                    if protocol == "paper":
                        planned = [detector.paper_items(f.pixels) for f in frames]
                        items = [item for _, passes in planned for item in passes]
                        found = iter(run(items, [options] * len(items)))
                        for frame, (passes, _) in zip(frames, planned, strict=True):
                            merged = [next(found) for _ in passes]
                            frame.faces = merge_found(
                                merged, passes, options.max_faces, keep_single=True
                            )
                        return hold.add(frames)
                    items = [prepare(f.pixels, detector.plan(f.pixels.shape[:2], policy))
                             for f in frames]  # fmt: skip
                    for frame, faces in zip(frames, run(items, [options] * len(items)),
                                            strict=True):  # fmt: skip
                        frame.faces = faces
                    return hold.add(frames)

                def write(done: Iterator[tuple[_Frame, np.ndarray]]) -> None:
                    nonlocal written
                    for frame, faces in done:
                        if hidden:
                            hidden(frame.index, faces)
                        picture = av.VideoFrame.from_ndarray(
                            anonymize(frame.pixels, faces, hiding, input_scale=input_scale),
                            format="rgb24",
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
                        limits.check_size(decoded.width, decoded.height)
                        pts = decoded.pts if decoded.pts is not None else _pts(index, vin)
                        start = pts if start is None else start
                        limits.check_duration(float((pts - start) * vin.time_base), index)
                        pixels = np.rot90(
                            decoded.to_ndarray(format="rgb24"), _quarter_turns(decoded.rotation)
                        )
                        batch.append(_Frame(index, pts, np.ascontiguousarray(pixels)))
                        index += 1
                        if len(batch) == per_batch:
                            write(flush(batch))
                            batch = []
                if info.frames_listed and index + max(2, info.frames // 100) < info.frames:
                    raise VideoError(
                        f"the video is truncated or corrupt: {index} of the {info.frames} frames "
                        "its container lists could be decoded"
                    )
                if batch:
                    write(flush(batch))
                write(hold.flush())
                for packet in vout.encode(None):
                    out.mux(packet)
    except av.error.FFmpegError as error:
        raise VideoError(f"not a readable video ({_reason(error)})") from error
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
