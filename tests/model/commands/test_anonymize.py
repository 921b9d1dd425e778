"""``python -m model anonymize``: folders in, the same tree out, every face found hidden."""

import numpy as np
import pytest
import samples
from cli import run_cli
from PIL import Image

from model.anonymize import AnonymizeOptions, face_mask
from model.detector import Detector
from model.images import open_image
from model.options import PRIVACY


@pytest.mark.slow
def test_photos_and_folders_come_out_hidden_in_the_same_tree(release_weights, dev_images, tmp_path):
    folder = tmp_path / "in" / "event"
    folder.mkdir(parents=True)
    jpeg = folder / "group.jpg"
    jpeg.write_bytes(dev_images[0].read_bytes())
    png = folder / "sub" / "copy.png"
    png.parent.mkdir()
    Image.open(dev_images[1]).save(png)
    (folder / "notes.txt").write_text("not an image")
    out = tmp_path / "out"
    weights = str(release_weights[32])
    done = run_cli(
        "anonymize", str(tmp_path / "in"), "--out", str(out), "--weights", weights,
        "--backend", "torch", "--method", "solid", "--color", "#00ff00",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    written = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert written == ["event/group.jpg", "event/sub/copy.png"]
    # Every face the detector finds at the privacy threshold is green in the lossless copy.
    detector = Detector(release_weights[32], backend="torch")
    original = open_image(png)
    (faces,) = detector.detect([original], score_threshold=PRIVACY.score_threshold)
    assert len(faces) >= 5
    hidden = np.asarray(Image.open(out / "event" / "sub" / "copy.png"))
    mask = face_mask(original.shape[:2], faces, AnonymizeOptions(method="solid"))
    assert (hidden[mask] == [0, 255, 0]).all(axis=1).mean() > 0.99
    assert (hidden[~mask] == original[~mask]).all(axis=1).mean() > 0.99
    assert Image.open(out / "event" / "group.jpg").size == Image.open(jpeg).size


def test_bad_options_exit_with_a_message(tmp_path):
    done = run_cli("anonymize", str(tmp_path), "--out", str(tmp_path / "o"), "--color", "nope")
    assert done.returncode == 2
    assert "color 'nope'" in done.stderr


def test_videos_come_out_with_their_frames_and_sound(release_weights, tmp_path):
    pytest.importorskip("av", reason="needs the video extra")
    from model.video import probe

    source = samples.video(tmp_path / "in" / "clip.mkv", frames=12)
    done = run_cli(
        "anonymize", str(source.parent), "--out", str(tmp_path / "out"),
        "--weights", str(release_weights[32]), "--backend", "torch", "--hold", "1",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    before, after = probe(source), probe(tmp_path / "out" / "clip.mkv")
    assert (after.frames, after.rate, after.audio_streams) == (12, before.rate, 1)
    assert "clip.mkv: 12 frames" in done.stdout + done.stderr
