"""Awkward image files built on the fly for the decoding and service tests."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image


def encode(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def png_bomb(side: int = 20_000) -> bytes:
    """A valid 1-bit PNG of ``side x side`` zeros: tens of KB that decode to 400M pixels."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    row = b"\x00" * (1 + (side + 7) // 8)
    compressor = zlib.compressobj(9)
    data = b"".join(compressor.compress(row) for _ in range(side)) + compressor.flush()
    header = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data) + chunk(b"IEND", b"")
    )


def truncated_jpeg(path: Path) -> bytes:
    data = path.read_bytes()
    return data[: len(data) // 2]


def cmyk_jpeg(path: Path) -> bytes:
    return encode(Image.open(path).convert("CMYK"), "JPEG", quality=95)


def sixteen_bit_png(path: Path) -> bytes:
    grey = np.asarray(Image.open(path).convert("L"), dtype=np.uint16) * 257
    return encode(Image.fromarray(grey), "PNG")


def exif_rotated_png(path: Path) -> bytes:
    """The image stored sideways with EXIF orientation 6: upright it is the original."""
    image = Image.open(path).convert("RGB")
    exif = Image.Exif()
    exif[0x0112] = 6
    return encode(image.transpose(Image.Transpose.ROTATE_90), "PNG", exif=exif)


def exif_rotated_jpeg(path: Path) -> bytes:
    image = Image.open(path).convert("RGB")
    exif = Image.Exif()
    exif[0x0112] = 6
    return encode(image.transpose(Image.Transpose.ROTATE_90), "JPEG", quality=95, exif=exif)


def photo(width: int = 160, height: int = 120, fmt: str = "JPEG", *, seed: int = 0) -> bytes:
    """A smooth random picture (no data needed): blurred noise, encoded as ``fmt``."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (max(1, height // 8), max(1, width // 8), 3), dtype=np.uint8)
    image = Image.fromarray(small).resize((width, height), Image.Resampling.BICUBIC)
    return encode(image, fmt, **({"quality": 90} if fmt == "JPEG" else {}))


def scan_bomb(side: int, copies: int) -> bytes:
    """A progressive JPEG of ``side x side`` whose last scan is repeated ``copies`` times:
    libjpeg only warns about the bogus progression and decodes every copy, each over the
    whole image."""
    gradient = np.linspace(0, 255, side, dtype=np.uint8)
    image = Image.fromarray(np.stack([np.tile(gradient, (side, 1))] * 3, axis=2))
    data = encode(image, "JPEG", quality=90, progressive=True)
    last_scan = data.rindex(b"\xff\xda")
    end = data.rindex(b"\xff\xd9")
    return data[:end] + data[last_scan:end] * copies + data[end:]


def video(
    path: Path,
    *,
    frames: int = 24,
    rate: int = 12,
    size: tuple[int, int] = (160, 120),
    codec: str = "libx264",
    audio: str | None = "aac",
    rotation: int = 0,
    picture: bytes | None = None,
) -> Path:
    """A short video of ``picture`` (a smooth random one by default) panning sideways, with a
    tone on an audio track, written with PyAV (``rotation``: a display rotation flag)."""
    import av

    base = np.asarray(Image.open(io.BytesIO(picture or photo(*size))).convert("RGB").resize(size))
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as out:
        stream = out.add_stream(codec, rate=rate)
        stream.width, stream.height = size
        stream.pix_fmt = "yuv420p"
        if rotation:
            stream.set_display_rotation(rotation)
        sound = out.add_stream(audio, rate=48000) if audio else None
        if sound is not None:
            sound.layout = "mono"
        for index in range(frames):
            frame = av.VideoFrame.from_ndarray(np.roll(base, index * 2, axis=1), format="rgb24")
            frame.pts = index
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
        if sound is not None:
            seconds = np.arange(48000 * frames // rate) / 48000
            tone = (0.3 * np.sin(2 * np.pi * 440 * seconds)).astype(np.float32)[None]
            chunk = av.AudioFrame.from_ndarray(tone, format="fltp", layout="mono")
            chunk.sample_rate, chunk.pts = 48000, 0
            for packet in [*sound.encode(chunk), *sound.encode(None)]:
                out.mux(packet)
    return path


def lying_duration_mp4(path: Path, *, seconds: int = 60, claimed_s: int = 1) -> Path:
    """An mp4 of ``seconds`` at 5 frames a second (64x48) whose movie, track and media headers
    all claim it lasts ``claimed_s``: what the frames' timestamps say is the truth."""
    data = bytearray(
        video(path, frames=5 * seconds, rate=5, size=(64, 48), audio=None).read_bytes()
    )
    for atom, duration_at in ((b"mvhd", 20), (b"mdhd", 20), (b"tkhd", 24)):
        start = data.find(atom)
        # version 0 boxes: the timescale of mvhd and mdhd sits just before their duration.
        scale_at = start + 16 if atom != b"tkhd" else data.find(b"mvhd") + 16
        timescale = struct.unpack(">I", data[scale_at : scale_at + 4])[0]
        data[start + duration_at : start + duration_at + 4] = struct.pack(
            ">I", timescale * claimed_s
        )
    path.write_bytes(data)
    return path


def piped_matroska(path: Path, *, seconds: int = 60) -> Path:
    """A Matroska written to a pipe, as a live encoder writes it: no duration anywhere."""
    import av

    class Pipe:
        def __init__(self) -> None:
            self.chunks: list[bytes] = []

        def write(self, chunk: bytes) -> int:
            self.chunks.append(bytes(chunk))
            return len(chunk)

    pipe = Pipe()
    with av.open(pipe, "w", format="matroska") as out:
        stream = out.add_stream("libx264", rate=5)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for index in range(5 * seconds):
            frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), index % 250, np.uint8))
            frame.pts = index
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    path.write_bytes(b"".join(pipe.chunks))
    return path


def half_of_a_faststart_mp4(path: Path, frames: int = 100) -> Path:
    """The first half of an mp4 whose index comes first: the index lists every frame, the
    file holds half of them (an upload cut short)."""
    import av

    whole = path.with_name(f"whole-{path.name}")
    with av.open(str(whole), "w", options={"movflags": "faststart"}) as out:
        stream = out.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        noise = np.random.default_rng(0)
        for index in range(frames):
            pixels = noise.integers(0, 255, (48, 64, 3), dtype=np.uint8)
            frame = av.VideoFrame.from_ndarray(pixels, format="rgb24")
            frame.pts = index
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    data = whole.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def raw_h264(path: Path, frames: int = 20) -> Path:
    """An H.264 stream with no container at all (whatever ``path`` is called)."""
    import av

    with av.open(str(path), "w", format="h264") as out:
        stream = out.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for index in range(frames):
            frame = av.VideoFrame.from_ndarray(np.zeros((48, 64, 3), np.uint8), format="rgb24")
            frame.pts = index
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return path


# What a photo with alpha stores under alpha 0 in the tests: never shown, so never written.
SECRET = (1, 2, 3)


def transparent_photo(width: int = 160, height: int = 120, *, seed: int = 0) -> Image.Image:
    """An RGBA picture: its left quarter transparent with :data:`SECRET` stored under it, a
    band of half-transparent pixels next to it, the rest opaque."""
    rgb = np.asarray(Image.open(io.BytesIO(photo(width, height, "PNG", seed=seed))))
    alpha = np.full((height, width), 255, np.uint8)
    alpha[:, : width // 4] = 0
    alpha[:, width // 4 : width // 2] = 128
    rgba = np.dstack([rgb, alpha])
    rgba[alpha == 0, :3] = SECRET
    return Image.fromarray(rgba)


def animation(fmt: str, frames: int = 3, size: tuple[int, int] = (64, 48)) -> bytes:
    """An animated GIF, WebP or PNG (APNG) of ``frames`` different pictures."""
    pictures = [Image.open(io.BytesIO(photo(*size, "PNG", seed=seed))) for seed in range(frames)]
    return encode(pictures[0], fmt, save_all=True, append_images=pictures[1:], duration=100, loop=0)
