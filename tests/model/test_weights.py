"""The registry's real download path, against a loopback HTTP server."""

import functools
import http.server
import shutil
import threading

import pytest

from model.checkpoint import read_checkpoint
from model.errors import CheckpointError, WeightsError
from model.options import RuntimeOptions
from model.weights import known_checkpoints, load_checkpoint, pull


def into(folder, mirror=None) -> RuntimeOptions:
    """Runtime options that keep checkpoints in ``folder``, pulled from ``mirror``."""
    return RuntimeOptions(
        weights_dir=folder, weights_mirror=None if mirror is None else str(mirror)
    )


@pytest.fixture
def http_mirror(tmp_path):
    """Serve a folder over HTTP on 127.0.0.1; yields (folder, base URL)."""
    folder = tmp_path / "served"
    folder.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield folder, f"http://127.0.0.1:{server.server_port}/"
    server.shutdown()
    server.server_close()


def test_manifest_lists_the_three_releases():
    known = known_checkpoints()
    assert sorted(known) == ["extd-32", "extd-48", "extd-64"]
    assert all("e99af10f282d07054c1cf7c4b8c035084daaff78" in e.url for e in known.values())


def test_pull_downloads_verifies_and_converts(http_mirror, weights_mirror, tmp_path):
    served, url = http_mirror
    for name in ("EXTD_32.pth", "EXTD_64.pth"):
        shutil.copy(weights_mirror / name, served / name)
    target = tmp_path / "weights"
    paths = pull(["extd-32", "extd-64"], runtime=into(target, url))
    assert [p.name for p in paths] == ["extd-32.safetensors", "extd-64.safetensors"]
    assert sorted(p.name for p in target.iterdir()) == [
        "extd-32.safetensors",
        "extd-64.safetensors",
    ]
    checkpoint = read_checkpoint(paths[1])
    assert checkpoint.variant.name == "fpn-64-prelu"
    assert checkpoint.training["source_sha256"] == known_checkpoints()["extd-64"].sha256
    assert "NAVER" in checkpoint.training["license"]
    assert checkpoint.sha256 == read_checkpoint(weights_mirror / "EXTD_64.pth").sha256


def test_corrupted_download_is_refused_and_nothing_is_written(
    http_mirror, weights_mirror, tmp_path
):
    served, url = http_mirror
    data = bytearray((weights_mirror / "EXTD_48.pth").read_bytes())
    data[5000] ^= 0x01
    (served / "EXTD_48.pth").write_bytes(bytes(data))
    target = tmp_path / "weights"
    with pytest.raises(WeightsError, match="sha256 mismatch"):
        pull(["extd-48"], runtime=into(target, url))
    assert not target.exists() or not any(target.iterdir())


def test_missing_file_on_the_server_is_a_clear_error(http_mirror, tmp_path):
    _, url = http_mirror
    with pytest.raises(WeightsError, match=r"download .* failed"):
        pull(["extd-32"], runtime=into(tmp_path, url))


def test_folder_mirror_and_registry_names(weights_mirror, tmp_path):
    checkpoint = load_checkpoint("extd-32", runtime=into(tmp_path, weights_mirror))
    assert checkpoint.variant.width == 32
    assert (tmp_path / "extd-32.safetensors").is_file()


def test_registry_names_default_to_the_cache_folder(weights_mirror, tmp_path):
    """Without a weights folder, names live in the cache folder, whatever the current one."""
    runtime = RuntimeOptions(cache_dir=tmp_path / "cache", weights_mirror=str(weights_mirror))
    assert runtime.weights_folder == tmp_path / "cache" / "weights"
    (path,) = pull(["extd-32"], runtime=runtime)
    assert path == tmp_path / "cache" / "weights" / "extd-32.safetensors"
    assert load_checkpoint("extd-32", runtime=runtime).sha256 == read_checkpoint(path).sha256


def test_unknown_names_are_refused(tmp_path):
    with pytest.raises(WeightsError, match="unknown checkpoint names"):
        pull(["extd-99"], runtime=into(tmp_path))
    with pytest.raises(CheckpointError, match="neither a checkpoint file nor a known name"):
        load_checkpoint("extd-99")
