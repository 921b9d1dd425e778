"""Training data: layouts, invalid boxes, seeded augmentation, the resumable sampler."""

import numpy as np
import pytest

from model.errors import DataError
from model.train.augment import MIN_FACE_AREA, augment
from model.train.data import ResumableSampler, WiderFaceTrainSet, load_annotations


@pytest.fixture(scope="module")
def annotations(dev_split):
    found, skipped = load_annotations(dev_split)
    return found, skipped


def test_the_dev_split_layout_loads_and_invalid_boxes_are_counted(annotations):
    found, skipped = annotations
    assert len(found) == 834
    # Boxes of zero width or height (the empty image's placeholder among them) and the
    # one with a negative width.
    assert skipped == 7
    assert all((a.boxes[:, 2:] > a.boxes[:, :2]).all() for a in found)


def test_official_layout(tmp_path, dev_split):
    (tmp_path / "WIDER_train").mkdir()
    (tmp_path / "WIDER_train" / "images").symlink_to(dev_split / "images")
    (tmp_path / "wider_face_split").mkdir()
    gt = (dev_split / "wider_face_val_bbx_gt.txt").read_text()
    (tmp_path / "wider_face_split" / "wider_face_train_bbx_gt.txt").write_text(gt)
    found, _ = load_annotations(tmp_path, limit=5)
    assert len(found) == 5
    assert found[0].path.is_file()
    with pytest.raises(DataError, match="expected WIDER_train"):
        load_annotations(tmp_path / "WIDER_train")


def test_augmentation_is_seeded_and_keeps_valid_faces(annotations):
    found, _ = annotations
    dataset = WiderFaceTrainSet(found[:40], size=256, seed=7)
    for index in range(0, 40, 4):
        image, boxes = dataset[(0, index)]
        again, same_boxes = dataset[(0, index)]
        other, _ = dataset[(1, index)]
        assert image.shape == (3, 256, 256)
        assert np.array_equal(image, again)
        assert np.array_equal(boxes, same_boxes)
        assert not np.array_equal(image, other)
        pixels = boxes * 256
        assert ((boxes >= 0) & (boxes <= 1)).all()
        assert (
            ((pixels[:, 2] - pixels[:, 0]) * (pixels[:, 3] - pixels[:, 1])) >= MIN_FACE_AREA
        ).all()


def test_augmentation_handles_images_without_faces():
    rng = np.random.default_rng(0)
    pixels, boxes = augment(
        np.full((50, 80, 3), 200, np.uint8), np.zeros((0, 4), np.float32), size=64, rng=rng
    )
    assert pixels.shape == (64, 64, 3)
    assert boxes.shape == (0, 4)


def test_anchor_sampling_brings_faces_to_anchor_scales(annotations):
    found, _ = annotations
    sides = []
    for seed in range(60):
        rng = np.random.default_rng(seed)
        annotation = found[seed * 7]
        from model.images import open_image

        _, boxes = augment(open_image(annotation.path), annotation.boxes, size=640, rng=rng)
        sides += list(np.sqrt((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])))
    sides = np.array(sides)
    assert len(sides) > 100
    assert sides.min() >= 6
    assert (sides > 64).sum() > 10  # small WIDER faces are also enlarged


def test_sampler_resumes_and_shards():
    full = ResumableSampler(10, seed=3)
    stream = [key for key, _ in zip(full, range(35), strict=False)]
    assert sorted(index for epoch, index in stream[:10]) == list(range(10))
    assert stream[10][0] == 1
    resumed = ResumableSampler(10, seed=3, start=17)
    assert [key for key, _ in zip(resumed, range(18), strict=False)] == stream[17:35]
    ranks = [ResumableSampler(10, seed=3, rank=r, world=2) for r in (0, 1)]
    shards = [[key for key, _ in zip(s, range(5), strict=False)] for s in ranks]
    assert shards[0] == stream[0:10:2]
    assert shards[1] == stream[1:10:2]
