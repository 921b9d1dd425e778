"""The weights registry: known checkpoints, pulling them, and the one loader.

The manifest (``weights/manifest.toml``) pins each known checkpoint's URL
and sha256. ``pull`` downloads (or copies from ``EXTD_WEIGHTS_MIRROR``),
verifies and converts to the project format; nothing unverified is written.
Where checkpoints live and come from is the caller's
:class:`~model.options.RuntimeOptions` (its :attr:`weights_folder
<model.options.RuntimeOptions.weights_folder>` and ``weights_mirror``), so the
command line, the library and the service resolve a registry name alike.
"""

from __future__ import annotations

import hashlib
import logging
import tempfile
import tomllib
import urllib.error
import urllib.request
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from model.checkpoint import (
    PROJECT_SUFFIX,
    Checkpoint,
    read_checkpoint,
    read_release_checkpoint,
    save_checkpoint,
)
from model.errors import CheckpointError, WeightsError
from model.options import RuntimeOptions
from model.variants import Variant

log = logging.getLogger(__name__)

WEIGHTS_DIR_ENV = "EXTD_WEIGHTS_DIR"
MIRROR_ENV = "EXTD_WEIGHTS_MIRROR"
DOWNLOAD_TIMEOUT_S = 60
# The most accurate release: what the CLI and the service use when no model is named.
DEFAULT_MODEL = "extd-64"


@dataclass(frozen=True)
class KnownCheckpoint:
    name: str
    variant: Variant
    url: str
    sha256: str  # of the released file
    bytes: int
    license: str
    content_sha256: str  # of the converted tensors (Checkpoint.sha256)
    int8_hard_ap_loss: float | None  # measured by scripts/int8.py, in points

    @property
    def filename(self) -> str:
        return self.url.rsplit("/", 1)[-1]


def manifest_path() -> Path:
    # Wheels carry a copy next to this module; a source checkout reads weights/.
    packaged = Path(__file__).with_name("manifest.toml")
    if packaged.is_file():
        return packaged
    return Path(__file__).resolve().parents[1] / "weights" / "manifest.toml"


@cache
def known_checkpoints() -> dict[str, KnownCheckpoint]:
    with open(manifest_path(), "rb") as handle:
        entries = tomllib.load(handle)["checkpoint"]
    return {
        e["name"]: KnownCheckpoint(
            e["name"],
            Variant.parse(e["variant"]),
            e["url"],
            e["sha256"],
            e["bytes"],
            e["license"],
            e["content_sha256"],
            e.get("int8_hard_ap_loss"),
        )
        for e in entries
    }


def int8_hard_ap_loss(checkpoint: Checkpoint) -> float | None:
    """The hard AP (points) ``openvino-int8`` loses on this checkpoint, where measured: by the
    quantization-aware fine-tuning that wrote it, or in the manifest for a released one."""
    recorded = checkpoint.training.get("int8_hard_ap_loss")
    if recorded is not None:
        return float(recorded)
    known = {e.content_sha256: e for e in known_checkpoints().values()}
    entry = known.get(checkpoint.sha256)
    return entry.int8_hard_ap_loss if entry else None


def _fetch(entry: KnownCheckpoint, mirror: str | None) -> bytes:
    if mirror and not mirror.startswith(("http://", "https://", "file://")):
        path = Path(mirror) / entry.filename
        try:
            return path.read_bytes()
        except OSError as error:
            raise WeightsError(f"{entry.name}: cannot read mirror file {path}: {error}") from error
    url = f"{mirror.rstrip('/')}/{entry.filename}" if mirror else entry.url
    log.debug("downloading %s from %s", entry.name, url)
    try:
        with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response:
            data = response.read(entry.bytes + 1)
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        raise WeightsError(
            f"{entry.name}: download from {url} failed ({reason}). Without access to it:\n"
            f"  - set {MIRROR_ENV} to a folder or base URL holding {entry.filename};\n"
            "  - or run `python -m model weights pull` where there is access, and copy the "
            "weights folder here;\n"
            f"  - or mount a folder of checkpoints as {WEIGHTS_DIR_ENV} and set "
            "EXTD_PULL_MISSING=false."
        ) from error
    if len(data) > entry.bytes:
        raise WeightsError(f"{entry.name}: {url} is larger than the expected {entry.bytes} bytes")
    return data


def pull(
    names: list[str] | None = None,
    *,
    runtime: RuntimeOptions = RuntimeOptions(),
    force: bool = False,
) -> list[Path]:
    """Fetch (from ``runtime.weights_mirror``, a folder or base URL, else the public URL),
    verify and convert known checkpoints (default: all) into ``runtime.weights_folder``;
    returns the written (or already present) files."""
    directory, mirror = runtime.weights_folder, runtime.weights_mirror
    known = known_checkpoints()
    unknown = sorted(set(names or []) - set(known))
    if unknown:
        raise WeightsError(f"unknown checkpoint names {unknown}; known: {sorted(known)}")
    paths = []
    for name in names or sorted(known):
        entry = known[name]
        target = directory / f"{name}{PROJECT_SUFFIX}"
        if target.is_file() and not force:
            paths.append(target)
            continue
        data = _fetch(entry, mirror)
        digest = hashlib.sha256(data).hexdigest()
        if digest != entry.sha256:
            raise WeightsError(
                f"{entry.name}: sha256 mismatch (got {digest}, expected {entry.sha256}); "
                "the file is corrupt or not the pinned release, nothing was written"
            )
        with tempfile.TemporaryDirectory() as scratch:
            release_file = Path(scratch) / entry.filename
            release_file.write_bytes(data)
            checkpoint = read_release_checkpoint(release_file, entry.variant)
        checkpoint.source = entry.url
        checkpoint.training = {
            "origin": "EXTD_Pytorch release",
            "source_sha256": digest,
            "license": entry.license,
        }
        paths.append(save_checkpoint(checkpoint, target))
        log.info("wrote %s", target)
    return paths


def load_checkpoint(
    weights: str | Path,
    variant: Variant | None = None,
    *,
    runtime: RuntimeOptions = RuntimeOptions(),
) -> Checkpoint:
    """The one loader: a project ``.safetensors``, a released ``.pth`` or a registry name.

    A registry name not yet in ``runtime.weights_folder`` is pulled there first (from the
    mirror when one is set).
    """
    path = Path(weights)
    if path.is_file():
        return read_checkpoint(path, variant)
    name = str(weights)
    if name in known_checkpoints():
        return read_checkpoint(pull([name], runtime=runtime)[0])
    raise CheckpointError(
        f"{name!r} is neither a checkpoint file nor a known name ({', '.join(known_checkpoints())})"
    )
