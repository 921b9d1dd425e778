"""The data the tests and benchmarks use, fetched from pinned public sources or a mirror.

Not part of the core: only ``python -m model data`` and the tests' data
lookup (``tools/data.py``) use it. The layout is that of the project's
shared folder: ``weights/EXTD_*.pth`` (the released checkpoints) and
``data/wider_val_dev/`` (834 WIDER FACE val images, every 4th of each event,
with the official ground truth and difficulty lists). Every file is checked
against ``manifest.tsv`` beside this module (sha256 and size) and written
atomically; files already present and correct are kept, and
archive downloads resume where they stopped.

Sources: a mirror (``EXTD_DATA_MIRROR``: a folder or base URL with the same
layout) file by file, or the public originals: the weights registry's URLs,
the WIDER FACE archives at a pinned revision of their Hugging Face
repository, and the official difficulty lists as the EXTD release ships them
(reading those ``.mat`` files needs scipy).
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import shutil
import urllib.error
import urllib.request
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from model.errors import DataError
from model.files import atomic_path
from model.weights import known_checkpoints

log = logging.getLogger(__name__)

MANIFEST = Path(__file__).with_name("manifest.tsv")
MIRROR_ENV = "EXTD_DATA_MIRROR"
DEV_SPLIT = "data/wider_val_dev"
IMAGES = f"{DEV_SPLIT}/images/"
GROUND_TRUTH = f"{DEV_SPLIT}/wider_face_val_bbx_gt.txt"
DIFFICULTY = f"{DEV_SPLIT}/difficulty.json"
WIDER_REVISION = "833d07e7bf3860f294242312fe95eed0561eeb17"
WIDER_URL = f"https://huggingface.co/datasets/CUHK-CSE/wider_face/resolve/{WIDER_REVISION}/data/"
DIFFICULTY_URL = (
    "https://github.com/clovaai/EXTD_Pytorch/raw/e99af10f282d07054c1cf7c4b8c035084daaff78/"
    "eval_tools/ground_truth/wider_{setting}_val.mat"
)
TIMEOUT_S = 60
CHUNK_BYTES = 1 << 20


@dataclass(frozen=True)
class Entry:
    path: str
    sha256: str
    size: int


def read_manifest(path: Path = MANIFEST) -> list[Entry]:
    rows = [line.split("\t") for line in path.read_text().splitlines()[1:] if line]
    return [Entry(p, digest, int(size)) for p, digest, size in rows]


def write_manifest(root: Path, path: Path = MANIFEST) -> None:
    """Record the files of a complete data folder (a maintainer's step, from the shared copy)."""
    files = [root / "weights" / f"EXTD_{w}.pth" for w in (32, 48, 64)]
    files += [root / GROUND_TRUTH, root / DIFFICULTY]
    files += sorted((root / DEV_SPLIT / "images").rglob("*.jpg"))
    lines = ["path\tsha256\tbytes"]
    lines += [
        f"{f.relative_to(root).as_posix()}\t{sha256(f.read_bytes())}\t{f.stat().st_size}"
        for f in files
    ]
    with atomic_path(path) as scratch:
        scratch.write_text("\n".join(lines) + "\n")


def default_root(cache_dir: Path) -> Path:
    """Where ``fetch`` writes by default: ``data`` in the cache folder
    (:attr:`RuntimeOptions.cache_dir <model.options.RuntimeOptions.cache_dir>`)."""
    return cache_dir / "data"


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _is_intact(root: Path, entry: Entry) -> bool:
    path = root / entry.path
    return (
        path.is_file()
        and path.stat().st_size == entry.size
        and sha256(path.read_bytes()) == entry.sha256
    )


def _store(root: Path, entry: Entry, data: bytes, source: str) -> None:
    """Write one file if it is the pinned one; otherwise refuse and write nothing."""
    if len(data) != entry.size or sha256(data) != entry.sha256:
        raise DataError(
            f"{entry.path} from {source} is not the pinned file (sha256 {sha256(data)}, "
            f"{len(data)} bytes; expected {entry.sha256}, {entry.size} bytes): nothing written"
        )
    with atomic_path(root / entry.path) as scratch:
        scratch.write_bytes(data)


def _read(source: str, *, limit: int | None = None) -> bytes:
    """The bytes at a URL or local path."""
    if not source.startswith(("http://", "https://", "file://")):
        try:
            return Path(source).read_bytes()
        except OSError as error:
            raise DataError(f"cannot read {source}: {error}") from error
    try:
        with urllib.request.urlopen(source, timeout=TIMEOUT_S) as response:
            return response.read() if limit is None else response.read(limit + 1)
    except (urllib.error.URLError, OSError) as error:
        raise DataError(
            f"download of {source} failed: {getattr(error, 'reason', error)}"
        ) from error


def _join(base: str, relative: str) -> str:
    if base.startswith(("http://", "https://", "file://")):
        return f"{base.rstrip('/')}/{relative}"
    return str(Path(base) / relative)


@dataclass(frozen=True)
class FetchReport:
    root: Path
    fetched: int
    present: int


def fetch(root: Path, *, mirror: str | None = None, progress: bool = True) -> FetchReport:
    """Make ``root`` hold every manifest file, intact, from ``mirror`` (a folder or base URL
    with the same layout) or the public sources; returns what was fetched and kept."""
    entries = read_manifest()
    with tqdm(entries, desc="check", unit="file", disable=not progress or None) as checking:
        missing = [e for e in checking if not _is_intact(root, e)]
    if missing:
        log.info("fetching %d of %d files into %s", len(missing), len(entries), root)
        if mirror:
            _from_mirror(root, missing, mirror, progress)
        else:
            _from_public_sources(root, missing, progress)
    return FetchReport(root, len(missing), len(entries) - len(missing))


def _bar(entries: list[Entry], progress: bool) -> tqdm:
    total = sum(e.size for e in entries)
    return tqdm(total=total, desc="fetch", unit="B", unit_scale=True, disable=not progress or None)


def _from_mirror(root: Path, entries: list[Entry], mirror: str, progress: bool) -> None:
    with _bar(entries, progress) as bar:
        for entry in entries:
            source = _join(mirror, entry.path)
            _store(root, entry, _read(source, limit=entry.size), source)
            bar.update(entry.size)


def _from_public_sources(root: Path, entries: list[Entry], progress: bool) -> None:
    urls = {f"weights/{c.filename}": c.url for c in known_checkpoints().values()}
    weights = [e for e in entries if e.path in urls]
    wider = [e for e in entries if e.path not in urls]
    with _bar(weights, progress) as bar:
        for entry in weights:
            _store(root, entry, _read(urls[entry.path], limit=entry.size), urls[entry.path])
            bar.update(entry.size)
    if wider:
        _wider_dev_split(root, wider, progress)


def _download(url: str, target: Path, progress: bool) -> Path:
    """Download to ``target``, resuming a partial ``.part`` file with an HTTP range request."""
    if target.is_file():
        return target
    partial = target.with_name(target.name + ".part")
    partial.parent.mkdir(parents=True, exist_ok=True)
    start = partial.stat().st_size if partial.is_file() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={start}-"} if start else {})
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
            if start and response.status != 206:  # the server ignored the range: start over
                start = 0
            size = start + int(response.headers.get("Content-Length") or 0)
            with (
                open(partial, "ab" if start else "wb") as out,
                tqdm(
                    total=size or None,
                    initial=start,
                    desc=target.name,
                    unit="B",
                    unit_scale=True,
                    disable=not progress or None,
                ) as bar,
            ):
                while chunk := response.read(CHUNK_BYTES):
                    out.write(chunk)
                    bar.update(len(chunk))
    except (urllib.error.URLError, OSError) as error:
        raise DataError(
            f"download of {url} failed ({getattr(error, 'reason', error)}); run the command "
            f"again to resume, or set {MIRROR_ENV} to a folder or URL with the same files"
        ) from error
    os.replace(partial, target)
    return target


def _wider_dev_split(root: Path, entries: list[Entry], progress: bool) -> None:
    """Images from the official val archive, the ground truth limited to the split, and the
    difficulty lists rebuilt from the official ``.mat`` files; all checked against the manifest."""
    downloads = root / "downloads"
    wanted = {e.path: e for e in entries}
    images = [e for e in entries if e.path.startswith(IMAGES)]
    if images:
        archive = _download(WIDER_URL + "WIDER_val.zip", downloads / "WIDER_val.zip", progress)
        with zipfile.ZipFile(archive) as zipped:
            for entry in tqdm(images, desc="extract", unit="img", disable=not progress or None):
                member = "WIDER_val/images/" + entry.path.removeprefix(IMAGES)
                _store(root, entry, zipped.read(member), f"{archive}:{member}")
    names = [e.path.removeprefix(IMAGES) for e in read_manifest() if e.path.startswith(IMAGES)]
    if GROUND_TRUTH in wanted:
        split = _download(
            WIDER_URL + "wider_face_split.zip", downloads / "wider_face_split.zip", progress
        )
        with zipfile.ZipFile(split) as zipped:
            text = zipped.read("wider_face_split/wider_face_val_bbx_gt.txt").decode()
        _store(root, wanted[GROUND_TRUTH], ground_truth_subset(text, names).encode(), str(split))
    if DIFFICULTY in wanted:
        settings = ("easy", "medium", "hard")
        mats = {s: _read(DIFFICULTY_URL.format(setting=s)) for s in settings}
        _store(root, wanted[DIFFICULTY], difficulty_json(mats, names).encode(), "the .mat lists")
    if downloads.is_dir():
        shutil.rmtree(downloads)


def ground_truth_subset(text: str, names: Iterable[str]) -> str:
    """The official ``bbx_gt.txt`` blocks of ``names``, byte for byte, in the official order."""
    keep, lines, out, i = set(names), text.splitlines(keepends=True), [], 0
    while i < len(lines):
        count = int(lines[i + 1])
        block = lines[i : i + 2 + max(count, 1)]
        if lines[i].strip() in keep:
            out += block
        i += len(block)
    return "".join(out)


def difficulty_json(mats: dict[str, bytes], names: Iterable[str]) -> str:
    """``{"<event>/<file>.jpg": {"easy": [...], ...}}`` from the official ``.mat`` lists."""
    try:
        from scipy.io import loadmat
    except ImportError as error:
        raise DataError(
            "rebuilding the difficulty lists reads MATLAB files: pip install scipy "
            f"(or set {MIRROR_ENV})"
        ) from error
    keep = set(names)
    lists: dict[str, dict[str, list[int]]] = {}
    for setting, data in mats.items():
        mat = loadmat(io.BytesIO(data))
        for event, files, gt in zip(
            mat["event_list"][:, 0], mat["file_list"][:, 0], mat["gt_list"][:, 0], strict=True
        ):
            for file, indices in zip(files[:, 0], gt[:, 0], strict=True):
                name = f"{event[0]}/{file[0]}.jpg"
                if name in keep:
                    lists.setdefault(name, {})[setting] = [int(v) for v in indices.reshape(-1)]
    rows = [f"{json.dumps(n)}: {json.dumps(lists[n], sort_keys=True)}" for n in sorted(lists)]
    return "{\n" + ",\n".join(rows) + "\n}\n"
