"""``python -m model batch``: Parquet rows equal to ``detect --json``, errors as rows,
``--resume``, hidden photos equal to ``anonymize``'s; on one local Ray of 2 CPUs."""

from __future__ import annotations

import json

import numpy as np
import pytest
import samples
from cli import run_cli
from helpers import assert_same_faces
from PIL import Image

pytest.importorskip("ray", reason="needs the batch extra: pip install 'extd-face[batch]'")
pq = pytest.importorskip("pyarrow.parquet", reason="needs the batch extra")

from model.commands import main  # noqa: E402
from model.commands.batch.files import ResultFolder, list_photos  # noqa: E402

FAST = ("--backend", "torch")


@pytest.fixture(scope="module")
def local_ray():
    """One local Ray for the module: the command uses it rather than starting its own."""
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture
def photos(dev_images, tmp_path):
    """A folder of real photos (one stored sideways, upright by EXIF) and one broken file."""
    folder = tmp_path / "photos"
    (folder / "event").mkdir(parents=True)
    for image in dev_images[:2]:
        (folder / "event" / image.name).write_bytes(image.read_bytes())
    (folder / "sideways.jpg").write_bytes(samples.exif_rotated_jpeg(dev_images[2]))
    (folder / "broken.jpg").write_text("not a photo")
    return folder


def rows_of(out) -> dict[str, dict]:
    return {row["path"]: row for row in pq.read_table(out).to_pylist()}


@pytest.mark.slow
def test_rows_equal_detect_json_and_a_broken_file_is_a_row(
    local_ray, photos, release_weights, tmp_path, capsys
):
    weights = ("--weights", str(release_weights[32]), *FAST)
    out = tmp_path / "rows"
    assert main(["batch", "detect", str(photos), "--out", str(out), *weights]) == 0
    assert "4 photos" in capsys.readouterr().out
    rows = rows_of(out)
    good = sorted(p for p in rows if not p.endswith("broken.jpg"))
    plain = run_cli("detect", *good, *weights, "--json")
    assert plain.returncode == 0, plain.stderr
    expected = json.loads(plain.stdout)
    assert sorted(expected) == good
    for path in good:
        row = rows[path]
        faces = [[*face["box"], face["score"]] for face in row["faces"]]
        assert_same_faces(np.array(faces), np.array(expected[path]), min_score=0.5)
        assert row["error"] is None
        upright = Image.open(path)
        if path.endswith("sideways.jpg"):  # EXIF orientation 6: a quarter turn
            assert (row["width"], row["height"]) == (upright.height, upright.width)
        else:
            assert (row["width"], row["height"]) == upright.size
        assert row["input_size"] == [row["width"], row["height"]]  # not shrunk by default
    assert sum(len(rows[p]["faces"]) for p in good) >= 10
    broken = rows[str(photos / "broken.jpg")]
    assert "not an image" in broken["error"]
    assert broken["faces"] is None
    assert broken["width"] is None


@pytest.mark.slow
def test_resume_processes_only_what_is_missing(local_ray, photos, release_weights, tmp_path):
    weights = ("--weights", str(release_weights[32]), *FAST)
    out = tmp_path / "rows"
    later = photos / "event" / "later.jpg"
    later.write_bytes(next((photos / "event").iterdir()).read_bytes())
    moved = later.rename(tmp_path / "later.jpg")
    assert main(["batch", "detect", str(photos), "--out", str(out), *weights]) == 0
    first = {f.name for f in out.iterdir()}
    # A second run on the same folder refuses to add rows twice...
    assert main(["batch", "detect", str(photos), "--out", str(out), *weights]) == 2
    moved.rename(later)
    # ... and --resume adds the photo that came since, alone.
    assert main(["batch", "detect", str(photos), "--out", str(out), "--resume", *weights]) == 0
    (added,) = {f.name for f in out.iterdir()} - first
    assert [row["path"] for row in pq.read_table(out / added).to_pylist()] == [str(later)]
    assert len(rows_of(out)) == 5
    assert len(pq.read_table(out)) == 5


@pytest.mark.slow
def test_anonymize_writes_what_the_plain_command_writes(
    local_ray, photos, release_weights, tmp_path, capsys
):
    weights = ("--weights", str(release_weights[32]), *FAST)
    batch, plain = tmp_path / "batch", tmp_path / "plain"
    (photos / "broken.jpg").unlink()
    assert main(["batch", "anonymize", str(photos), "--out", str(batch), *weights]) == 0
    assert "3 photos" in capsys.readouterr().out
    done = run_cli("anonymize", str(photos), "--out", str(plain), *weights)
    assert done.returncode == 0, done.stderr
    written = sorted(p.relative_to(batch) for p in batch.rglob("*") if p.is_file())
    assert written == sorted(p.relative_to(plain) for p in plain.rglob("*") if p.is_file())
    assert len(written) == 3
    for name in written:
        assert (batch / name).read_bytes() == (plain / name).read_bytes()
        assert (batch / name).read_bytes() != (photos / name).read_bytes()


@pytest.mark.slow
def test_no_room_for_an_actor_is_an_error_not_a_wait(local_ray, photos, release_weights, capsys):
    out = photos.parent / "rows"
    batch = [
        "batch",
        "detect",
        str(photos),
        "--out",
        str(out),
        "--weights",
        str(release_weights[32]),
    ]
    assert main([*batch, "--num-gpus", "1"]) == 2
    assert "has 0 GPUs, and an actor needs 1" in capsys.readouterr().err
    assert main([*batch, "--device", "cuda"]) == 2
    assert "needs --num-gpus" in capsys.readouterr().err
    assert not out.exists()


def test_inputs_folders_globs_lists_and_uris(photos, tmp_path, monkeypatch):
    source, paths = list_photos(str(photos))
    assert [source.relative(p).as_posix() for p in paths] == [
        "broken.jpg",
        *(f"event/{p.name}" for p in sorted((photos / "event").iterdir())),
        "sideways.jpg",
    ]
    source, paths = list_photos(str(photos / "ev*" / "*.jpg"))
    assert all(source.relative(p).parent.as_posix() == "event" for p in paths)
    assert len(paths) == 2
    # A list file: paths as written, relative ones from the current folder.
    monkeypatch.chdir(tmp_path)
    listed = tmp_path / "list.txt"
    listed.write_text("# two photos\nphotos/event/a.jpg\n\nphotos/sideways.jpg\n")
    source, paths = list_photos(str(listed))
    assert paths == ["photos/event/a.jpg", "photos/sideways.jpg"]
    assert source.relative(paths[0]).as_posix() == "event/a.jpg"
    # A URI: rows name photos by URI, read through pyarrow's filesystem.
    source, paths = list_photos(photos.as_uri())
    assert paths[-1] == (photos / "sideways.jpg").as_uri()
    assert source.read(paths[-1]) == (photos / "sideways.jpg").read_bytes()
    assert source.relative(paths[-1]).as_posix() == "sideways.jpg"


def test_bad_inputs_are_clear_errors(tmp_path):
    (tmp_path / "empty.txt").write_text("# nothing\n")
    for given, message in [
        (str(tmp_path / "missing" / "*.jpg"), "no file matches"),
        (str(tmp_path / "empty.txt"), "lists no photos"),
        ((tmp_path / "nowhere").as_uri(), "no such file or folder"),
    ]:
        with pytest.raises(ValueError, match=message):
            list_photos(given)


def test_results_are_written_whole_and_read_back(tmp_path):
    import pyarrow as pa

    results = ResultFolder(str(tmp_path / "out"))
    assert results.paths() == set()
    results.add(pa.table({"path": ["a.jpg", "b.jpg"], "error": [None, "broken"]}))
    assert not (tmp_path / "out").exists()  # nothing is written before enough rows or time
    results.flush()
    assert results.paths() == {"a.jpg", "b.jpg"}
    (tmp_path / "out" / "notes.parquet").write_text("not parquet")
    with pytest.raises(ValueError, match="not results"):
        results.paths()


def test_anonymize_out_must_be_a_folder(tmp_path):
    done = run_cli("batch", "anonymize", str(tmp_path), "--out", "s3://bucket/x")
    assert done.returncode == 2
    assert "not a URI" in done.stderr
