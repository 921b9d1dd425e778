"""Where ``python -m model batch`` reads photos and writes rows: local paths, or any
filesystem pyarrow opens from a URI (``s3://``, ``gs://``, ``abfs://``, ``hdfs://``, ``file://``).

An INPUT is a folder (searched recursively for photos), a glob, one photo, a
text file listing one path or URI per line, or the URI of any of these. Local
photos are named exactly as ``python -m model detect`` names them, so rows
join with its ``--json``; remote ones by their URI.
"""

from __future__ import annotations

import fnmatch
import glob
import os
import re
import time
import uuid
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from model.commands.detect import IMAGE_SUFFIXES, expand
from model.errors import ImageError, OptionsError
from model.files import atomic_path
from model.images import Source

_URI = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")
# A results file is written whole every ROWS_PER_FILE rows or FLUSH_SECONDS, whichever comes
# first: a run that stops loses at most that much, and --resume redoes only that.
ROWS_PER_FILE = 10_000
FLUSH_SECONDS = 60.0


def is_uri(text: str) -> bool:
    """``scheme://...``: a path on one of pyarrow's filesystems."""
    return bool(_URI.match(text))


def _open_uri(uri: str) -> tuple[pafs.FileSystem, str, str]:
    """The filesystem of ``uri`` (options such as ``?endpoint_override=`` included), the path
    in it, and the prefix that makes such a path a URI again (``s3://`` for
    ``s3://bucket/key``, whose path is ``bucket/key``)."""
    try:
        filesystem, path = pafs.FileSystem.from_uri(uri)
    except (pa.ArrowException, OSError, ValueError) as error:
        raise OptionsError(f"{uri}: no filesystem pyarrow can open ({error})") from error
    base = uri.split("?", 1)[0].rstrip("/")
    if not base.endswith(path):
        raise OptionsError(f"{uri}: write the path plainly (no percent-encoding)")
    return filesystem, path, base[: len(base) - len(path)]


@dataclass(frozen=True)
class PhotoSource:
    """The filesystem a batch's photos are read from, and the folder whose tree the outputs
    of ``anonymize`` keep."""

    root: str | None  # a photo below it keeps its path below it; any other keeps its name
    filesystem: pafs.FileSystem | None = None  # None: local paths
    prefix: str = ""  # what a filesystem path is written after to make a row's URI

    def read(self, path: str) -> Source:
        """What :mod:`model.inputs` decodes: a local photo as its path (errors name it), a
        remote one as its bytes."""
        if self.filesystem is None:
            return Path(path)
        try:
            with self.filesystem.open_input_file(path.removeprefix(self.prefix)) as file:
                return file.readall()
        except (pa.ArrowException, OSError) as error:
            raise ImageError(f"{path}: cannot be read ({error})") from error

    def relative(self, path: str) -> Path:
        """Where the photo goes under an output folder."""
        pure = PurePosixPath(path.removeprefix(self.prefix)) if self.prefix else Path(path)
        if self.root is not None and pure.is_relative_to(self.root):
            return Path(pure.relative_to(self.root))
        return Path(pure.name)


def list_photos(pattern: str) -> tuple[PhotoSource, list[str]]:
    """The photos an INPUT names, in order, and where they are read from."""
    if is_uri(pattern):
        return _list_remote(pattern)
    path = Path(pattern)
    if path.is_file() and path.suffix.lower() not in IMAGE_SUFFIXES:
        return _from_list(path.read_text(errors="replace"), str(path))
    if path.is_dir():
        root: str | None = str(path)
    elif not path.exists() and glob.has_magic(pattern):
        root = _fixed_part(pattern)
    else:
        root = None
    return PhotoSource(root), expand([pattern])


def _fixed_part(pattern: str) -> str:
    """The folder a glob searches: its components before the first wildcard."""
    parts = PurePosixPath(pattern).parts
    fixed = parts[: next(i for i, part in enumerate(parts) if glob.has_magic(part))]
    return str(PurePosixPath(*fixed)) if fixed else ""


def _list_remote(uri: str) -> tuple[PhotoSource, list[str]]:
    filesystem, path, prefix = _open_uri(uri)
    info = filesystem.get_file_info(path)
    if info.type == pafs.FileType.File and PurePosixPath(path).suffix.lower() in IMAGE_SUFFIXES:
        return PhotoSource(None, filesystem, prefix), [uri]
    if info.type == pafs.FileType.File:
        with filesystem.open_input_stream(path) as file:
            return _from_list(file.readall().decode(errors="replace"), uri)
    if info.type == pafs.FileType.Directory:
        root, wanted = path, None
    elif glob.has_magic(path):
        root, wanted = _fixed_part(path), path
    else:
        raise OptionsError(f"{uri}: no such file or folder")
    found = filesystem.get_file_info(pafs.FileSelector(root, recursive=True))
    paths = sorted(
        prefix + f.path
        for f in found
        if f.type == pafs.FileType.File
        and (
            fnmatch.fnmatchcase(f.path, wanted)
            if wanted
            else PurePosixPath(f.path).suffix.lower() in IMAGE_SUFFIXES
        )
    )
    if not paths:
        raise OptionsError(f"no images found in {uri}")
    return PhotoSource(root, filesystem, prefix), paths


def _from_list(text: str, name: str) -> tuple[PhotoSource, list[str]]:
    """A list file: one path or URI per line (blank lines and ``#`` comments skipped), all on
    one filesystem; outputs keep the tree below the folder the entries share."""
    entries = [line.strip() for line in text.splitlines()]
    entries = [e for e in entries if e and not e.startswith("#")]
    if not entries:
        raise OptionsError(f"{name}: lists no photos (one path or URI per line)")
    if not is_uri(entries[0]):
        if remote := [e for e in entries if is_uri(e)]:
            raise OptionsError(f"{name}: mixes local paths and URIs ({remote[0]})")
        return PhotoSource(_common_folder(entries)), entries
    filesystem, _, prefix = _open_uri(entries[0])
    if other := [e for e in entries if not e.startswith(prefix)]:
        raise OptionsError(f"{name}: lists photos on more than one filesystem ({other[0]})")
    root = _common_folder([e.removeprefix(prefix) for e in entries])
    return PhotoSource(root, filesystem, prefix), entries


def _common_folder(paths: list[str]) -> str | None:
    """The deepest folder holding all of ``paths`` ("" for the current one), or None when
    they have none in common (absolute and relative paths mixed)."""
    try:
        return os.path.commonpath([os.path.dirname(p) for p in paths])
    except ValueError:
        return None


class ResultFolder:
    """The Parquet folder of ``batch detect``: files written whole (a reader, or a resumed
    run, never sees half of one), named after the run that wrote them."""

    def __init__(self, out: str) -> None:
        self.name = out
        if is_uri(out):
            self.filesystem, self.root, _ = _open_uri(out)
        else:
            self.filesystem, self.root = None, str(Path(out).absolute())
        self._run = f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
        self._pending: list[pa.Table] = []
        self._rows = 0
        self._files = 0
        self._flushed = time.monotonic()

    def paths(self) -> set[str]:
        """The photos that rows already in the folder are about."""
        filesystem = self.filesystem or pafs.LocalFileSystem()
        if filesystem.get_file_info(self.root).type != pafs.FileType.Directory:
            return set()
        try:
            found = pads.dataset(self.root, filesystem=filesystem, format="parquet")
            return set(found.to_table(columns=["path"]).column("path").to_pylist())
        except (pa.ArrowException, OSError) as error:
            raise OptionsError(
                f"{self.name}: holds files that are not results ({error})"
            ) from error

    def add(self, table: pa.Table) -> None:
        """Keep rows; write them out when enough have come or enough time has passed."""
        self._pending.append(table)
        self._rows += table.num_rows
        if self._rows >= ROWS_PER_FILE or time.monotonic() - self._flushed >= FLUSH_SECONDS:
            self.flush()

    def flush(self) -> None:
        if self._rows:
            self._write(pa.concat_tables(self._pending))
        self._pending, self._rows, self._flushed = [], 0, time.monotonic()

    def _write(self, table: pa.Table) -> None:
        name = f"part-{self._run}-{self._files:05d}.parquet"
        self._files += 1
        if self.filesystem is None:
            with atomic_path(Path(self.root) / name) as scratch:
                pq.write_table(table, scratch)
        else:  # object stores make an object visible whole, once it is written
            self.filesystem.create_dir(self.root, recursive=True)
            pq.write_table(table, f"{self.root}/{name}", filesystem=self.filesystem)
