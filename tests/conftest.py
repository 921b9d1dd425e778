"""Shared fixtures: the released weights, reference detections and WIDER dev images.

Data is found as the benchmarks find it (:mod:`tools.data`); a test whose
data is nowhere skips, saying how to get it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from live_server import start_server

from model.options import RuntimeOptions
from model.runtime import tune_allocator
from tools import data
from tools.launcher import RunningServer

REPO = data.REPO
WIDTHS = (32, 48, 64)

torch.set_num_threads(min(2, os.cpu_count() or 1))
tune_allocator()


def shared_path(*parts: str, how: str = data.FETCH_HINT) -> Path:
    """The first data root holding ``parts``; the test skips when none does."""
    path = data.find(*parts)
    if path is None:
        pytest.skip(f"needs {'/'.join(parts)}: {how}")
    return path


@pytest.fixture(scope="session")
def runtime(tmp_path_factory) -> RuntimeOptions:
    """Converted models go to a folder of this run, not ~/.cache."""
    return RuntimeOptions(cache_dir=tmp_path_factory.getbasetemp() / "extd-cache")


@pytest.fixture(scope="session", autouse=True)
def private_cache(runtime) -> Iterator[None]:
    """Servers started by the tests share the run's cache folder too."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("EXTD_CACHE_DIR", str(runtime.cache_dir))
        yield


@pytest.fixture(scope="session")
def release_weights() -> dict[int, Path]:
    return {w: shared_path("weights", f"EXTD_{w}.pth") for w in WIDTHS}


@pytest.fixture(scope="session")
def weights_mirror() -> Path:
    return shared_path("weights")


@pytest.fixture(scope="session")
def dev_split() -> Path:
    return shared_path("data", "wider_val_dev")


@pytest.fixture(scope="session")
def reference() -> dict[int, dict[Path, list[list[float]]]]:
    """Release detections per width: image path -> ``[[x1, y1, x2, y2, score], ...]``."""
    loaded = {}
    for width in WIDTHS:
        file = shared_path(
            "reference",
            f"extd_{width}_detections.json",
            how="the release's own detections are not public: use the project's shared folder",
        )
        detections = json.loads(file.read_text())["detections"]
        loaded[width] = {
            shared_path(*Path(name).parts): faces for name, faces in detections.items()
        }
    return loaded


@pytest.fixture(scope="session")
def dev_images(dev_split: Path) -> list[Path]:
    """A few real WIDER dev images of different sizes (smallest first)."""
    names = [
        "12--Group/12_Group_Group_12_Group_Group_12_182.jpg",
        "52--Photographers/52_Photographers_photographertakingphoto_52_228.jpg",
        "2--Demonstration/2_Demonstration_Political_Rally_2_791.jpg",
        "7--Cheering/7_Cheering_Cheering_7_29.jpg",
    ]
    return [dev_split / "images" / name for name in names]


@pytest.fixture(scope="session")
def server(tmp_path_factory, weights_mirror) -> Iterator[RunningServer]:
    """The default configuration; its empty weights folder is filled by pulling on start."""
    folder = tmp_path_factory.mktemp("server")
    running = start_server(
        folder, {"EXTD_WEIGHTS_MIRROR": str(weights_mirror), "EXTD_WATCH_WEIGHTS": "false"}
    )
    yield running
    running.stop()


@pytest.fixture(scope="session")
def reference_detectors(release_weights):
    """In-process Detectors to check the server's answers against."""
    from model.detector import Detector

    return {f"extd-{w}": Detector(path, backend="torch") for w, path in release_weights.items()}
