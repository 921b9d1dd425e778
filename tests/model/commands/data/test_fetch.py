"""``python -m model data fetch`` against a loopback mirror of the shared folder."""

from __future__ import annotations

import functools
import http.server
import io
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from conftest import shared_path

from model.commands.data.fetch import (
    DEV_SPLIT,
    DIFFICULTY,
    GROUND_TRUTH,
    DataError,
    difficulty_json,
    fetch,
    ground_truth_subset,
    read_manifest,
    write_manifest,
)

CORRUPTED = f"{DEV_SPLIT}/images/12--Group/12_Group_Group_12_Group_Group_12_182.jpg"


@pytest.fixture(scope="module")
def data_root() -> Path:
    """A folder holding every manifest file (the shared folder or a fetched copy)."""
    return shared_path(DEV_SPLIT).parents[1]


class Handler(http.server.SimpleHTTPRequestHandler):
    corrupt: str | None = None

    def send_head(self):  # serve one file with a flipped byte when asked to
        handle = super().send_head()
        if handle is not None and self.corrupt and self.path.lstrip("/") == self.corrupt:
            data = bytearray(handle.read())
            handle.close()
            data[len(data) // 2] ^= 0xFF
            return io.BytesIO(bytes(data))
        return handle

    def log_message(self, *args) -> None:
        pass


def serve(root: Path, corrupt: str | None = None) -> Iterator[str]:
    handler = type("H", (Handler,), {"corrupt": corrupt})
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(handler, directory=str(root))
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()


@pytest.fixture
def mirror(data_root) -> Iterator[str]:
    yield from serve(data_root)


@pytest.fixture
def corrupt_mirror(data_root) -> Iterator[str]:
    yield from serve(data_root, corrupt=CORRUPTED)


def test_fetch_from_a_mirror_checks_every_file_and_resumes(corrupt_mirror, mirror, tmp_path):
    with pytest.raises(DataError, match="not the pinned file"):
        fetch(tmp_path, mirror=corrupt_mirror, progress=False)
    assert not (tmp_path / CORRUPTED).exists()
    assert not list(tmp_path.rglob(".*.tmp"))  # atomic: no half-written files
    before = {p for p in tmp_path.rglob("*") if p.is_file()}
    report = fetch(tmp_path, mirror=mirror, progress=False)
    # The second run fetched only what the first did not keep.
    assert report.fetched == len(read_manifest()) - len(before)
    assert (tmp_path / CORRUPTED).is_file()
    assert fetch(tmp_path, mirror=mirror, progress=False).fetched == 0
    assert oct((tmp_path / GROUND_TRUTH).stat().st_mode & 0o777) == "0o644"


def test_the_manifest_is_the_shared_copy(data_root, tmp_path):
    write_manifest(data_root, tmp_path / "manifest.tsv")
    assert read_manifest(tmp_path / "manifest.tsv") == read_manifest()


def test_difficulty_lists_rebuild_byte_for_byte_from_official_style_mat_files(data_root):
    scipy_io = pytest.importorskip("scipy.io", reason="needs scipy: pip install 'extd-face[fetch]'")
    expected = (data_root / DIFFICULTY).read_text()
    lists = json.loads(expected)
    events = sorted({name.split("/")[0] for name in lists})

    def cells(items: list) -> np.ndarray:
        column = np.empty((len(items), 1), dtype=object)
        column[:, 0] = items
        return column

    mats = {}
    for setting in ("easy", "medium", "hard"):
        files, gts = [], []
        for event in events:
            names = [n for n in lists if n.startswith(f"{event}/")]
            files.append(cells([n.split("/")[1].removesuffix(".jpg") for n in names]))
            gts.append(cells([np.array(lists[n][setting], float).reshape(-1, 1) for n in names]))
        buffer = io.BytesIO()
        scipy_io.savemat(
            buffer, {"event_list": cells(events), "file_list": cells(files), "gt_list": cells(gts)}
        )
        mats[setting] = buffer.getvalue()
    assert difficulty_json(mats, lists) == expected


def test_ground_truth_subset_keeps_official_blocks(data_root):
    text = (data_root / GROUND_TRUTH).read_text()
    assert ground_truth_subset(text, json.loads((data_root / DIFFICULTY).read_text())) == text
    first, second = (
        "0--Parade/0_Parade_marchingband_1_379.jpg",
        "0--Parade/0_Parade_Parade_0_102.jpg",
    )
    subset = ground_truth_subset(text, [second, first]).splitlines()
    assert subset[0] == first  # official order, whatever order the names come in
    assert second in subset
    assert len(subset) == 2 + int(subset[1]) + 2 + int(subset[subset.index(second) + 1])
