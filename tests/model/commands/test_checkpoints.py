"""``python -m model info`` and ``weights``."""

import json

from cli import run_cli


def test_info_reports_variant_and_parameters(release_weights):
    result = run_cli("info", str(release_weights[64]), "--json")
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    assert info["variant"] == "fpn-64-prelu"
    assert info["parameters"] == 162_352
    assert info["source"] == "EXTD_64.pth"


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
