"""``python -m model bench``: one backend's latency on a real photo, as a user runs it."""

import json

import pytest


@pytest.mark.slow
def test_a_user_times_a_registry_model_on_a_photo(user, photo):
    done = user.run(
        "bench", "--weights", "extd-64", "--image", photo, "--runs", "2", "--warmup", "1",
        "--json",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert (result["variant"], result["size"], result["runs"]) == ("fpn-64-prelu", [640, 480], 2)
    assert result["ms_per_image"] >= result["ms_per_image_min"] > 0
    assert result["faces"] >= 5  # the crowd photo, shrunk to 640x480
    assert f"{result['ms_per_image']} ms/image" in done.stdout


def test_a_missing_photo_is_a_clear_error(user):
    done = user.run("bench", "--weights", "extd-64", "--backend", "torch", "--image", "nowhere.jpg")
    assert done.returncode == 2
    assert "nowhere.jpg" in done.stderr
    assert "Traceback" not in done.stderr
