"""``python -m model data fetch`` as a user runs it: into the cache, from a mirror folder."""

import pytest

from model.commands.data.fetch import DEV_SPLIT, read_manifest


@pytest.mark.slow
def test_a_user_fetches_the_test_data_into_the_cache(new_user, dev_split):
    shared = dev_split.parents[1]  # a complete data folder: the layout a mirror has
    done = new_user.run("data", "fetch", "--mirror", shared)
    assert done.returncode == 0, done.stderr
    root = new_user.cache / "data"
    files = len(read_manifest())
    assert done.stdout.strip() == f"{root}: {files} files fetched, 0 already there"
    assert (root / DEV_SPLIT / "difficulty.json").read_bytes() == (
        shared / DEV_SPLIT / "difficulty.json"
    ).read_bytes()
    again = new_user.run("data", "fetch", "--mirror", shared)
    assert again.stdout.strip() == f"{root}: 0 files fetched, {files} already there"
