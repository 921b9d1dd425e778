"""``python -m model anonymize``: folders in, the same tree out, every face found hidden."""

import shutil

import numpy as np
import pytest
import samples
from cli import run_cli
from PIL import Image

from model.anonymize import AnonymizeOptions, face_mask
from model.detector import Detector
from model.images import open_image
from model.inputs import prepare
from model.options import PRIVACY, ScalePolicy

POLICY = ScalePolicy()  # the command's: each photo at its size bucket


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
    (faces,) = detector.run(
        [prepare(original, detector.plan(original.shape[:2], POLICY))], [PRIVACY]
    )
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


@pytest.mark.slow
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


@pytest.mark.slow
def test_a_photo_with_alpha_keeps_it_and_an_animation_is_skipped(
    release_weights, dev_images, tmp_path
):
    colours = open_image(dev_images[0])
    height, width = colours.shape[:2]
    alpha = np.full((height, width), 255, np.uint8)
    alpha[:, : width // 3] = 0  # never shown: the faces stored there must not come back
    alpha[:, width // 3 : 2 * width // 3] = 40  # faint: its faces are hidden all the same
    source = tmp_path / "in" / "cut-out.png"
    source.parent.mkdir()
    Image.fromarray(np.dstack([colours, alpha])).save(source)
    (tmp_path / "in" / "loop.gif").write_bytes(samples.animation("GIF"))
    out = tmp_path / "out"
    done = run_cli(
        "anonymize", str(source.parent), "--out", str(out), "--weights",
        str(release_weights[32]), "--backend", "torch", "--method", "solid", "--color", "#00ff00",
    )  # fmt: skip
    assert done.returncode == 1, done.stderr  # the animation is skipped, with why
    assert "loop.gif: an animated GIF" in done.stdout + done.stderr
    assert sorted(p.name for p in out.iterdir()) == ["cut-out.png"]
    hidden = np.asarray(Image.open(out / "cut-out.png"))
    assert hidden.shape == (height, width, 4)
    np.testing.assert_array_equal(hidden[..., 3], alpha)
    # The detector sees the colours, white where nothing is shown: the faint faces too.
    seen = open_image(source)
    detector = Detector(release_weights[32], backend="torch")
    (faces,) = detector.run([prepare(seen, detector.plan(seen.shape[:2], POLICY))], [PRIVACY])
    centres = (faces[:, 0] + faces[:, 2]) / 2
    assert ((centres > width / 3) & (centres < 2 * width / 3)).sum() >= 2
    mask = face_mask((height, width), faces, AnonymizeOptions(method="solid"))
    assert (hidden[mask, :3] == [0, 255, 0]).all(axis=1).mean() > 0.99
    assert (hidden[~mask, :3] == seen[~mask]).all(axis=1).mean() > 0.99
    under = hidden[alpha == 0, :3]  # the background, or a face's fill reaching into it
    assert ((under == 255).all(axis=1) | (under == [0, 255, 0]).all(axis=1)).all()


@pytest.mark.slow
def test_a_user_hides_the_faces_of_a_photo_and_a_video(user, photo):
    """From a folder of the user's own, with the default model from the mirror."""
    pytest.importorskip("av", reason="needs the video extra")
    from model.video import probe

    shutil.copyfile(photo, user.folder / "group.jpg")
    clip = samples.video(
        user.folder / "clip.mp4", frames=12, size=(512, 384), picture=photo.read_bytes()
    )
    done = user.run("anonymize", "group.jpg", "clip.mp4", "--out", "hidden")
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in (user.folder / "hidden").iterdir()) == ["clip.mp4", "group.jpg"]
    original = open_image(photo).astype(np.int16)
    hidden = np.asarray(Image.open(user.folder / "hidden" / "group.jpg")).astype(np.int16)
    assert hidden.shape == original.shape
    changed = np.abs(hidden - original).max(axis=2) > 40
    assert 0.005 < changed.mean() < 0.2  # the faces, not the picture
    before, after = probe(clip), probe(user.folder / "hidden" / "clip.mp4")
    assert (after.frames, after.rate, after.audio_streams) == (12, before.rate, 1)
