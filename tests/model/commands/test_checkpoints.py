"""``python -m model info`` and ``weights``."""

import json

import pytest
from cli import User, run_cli

from model.checkpoint import read_checkpoint


def test_info_reports_variant_and_parameters(release_weights):
    result = run_cli("info", str(release_weights[64]), "--json")
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    assert info["variant"] == "fpn-64-prelu"
    assert info["parameters"] == 162_352
    assert info["source"] == "EXTD_64.pth"


@pytest.mark.slow
def test_weights_pull_from_a_folder_mirror(weights_mirror, tmp_path):
    env = {"EXTD_WEIGHTS_DIR": str(tmp_path), "EXTD_WEIGHTS_MIRROR": str(weights_mirror)}
    result = run_cli("weights", "pull", "extd-32", env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(tmp_path / "extd-32.safetensors")
    info = run_cli("info", "extd-32", "--json", env=env)
    assert json.loads(info.stdout)["parameters"] == 62_939


def test_unknown_weights_is_a_clear_error():
    result = run_cli("info", "no-such-model")
    assert result.returncode == 2
    assert "neither a checkpoint file nor a known name" in result.stderr


def test_a_user_lists_the_registry(tmp_path):
    done = User.new(tmp_path, mirror=tmp_path).run("weights", "list")
    assert done.returncode == 0, done.stderr
    names = [line.split()[0] for line in done.stdout.splitlines()]
    assert names == ["extd-32", "extd-48", "extd-64"]


@pytest.mark.slow
def test_a_user_pulls_into_the_cache_and_describes_by_name(new_user):
    done = new_user.run("weights", "pull", "extd-64")
    assert done.returncode == 0, done.stderr
    pulled = new_user.cache / "weights" / "extd-64.safetensors"
    assert done.stdout.strip() == str(pulled)
    described = new_user.run("info", "extd-64", "--json")
    assert described.returncode == 0, described.stderr
    info = json.loads(described.stdout)
    assert (info["variant"], info["parameters"]) == ("fpn-64-prelu", 162_352)
    assert info["sha256"] == read_checkpoint(pulled).sha256
    assert list(new_user.folder.iterdir()) == []  # nothing written where the user stands
