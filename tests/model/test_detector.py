import numpy as np
import pytest
from helpers import assert_same_faces
from PIL import Image

from model.detector import Detector
from model.errors import ImageError, OptionsError
from model.images import open_image


@pytest.fixture(scope="module")
def detectors(release_weights):
    """The exact fp32 reference path: what the parity checks hold."""
    return {width: Detector(path, backend="torch") for width, path in release_weights.items()}


@pytest.mark.slow
@pytest.mark.parametrize("width", [32, 48, 64])
def test_parity_with_the_release(detectors, reference, width):
    paths = list(reference[width])
    results = detectors[width].detect([open_image(p) for p in paths], scale=1)
    for path, faces in zip(paths, results, strict=True):
        expected = np.array(reference[width][path])
        assert_same_faces(faces, expected)
        # The release keeps up to 750 boxes above 0.05; so do we.
        assert abs(len(faces) - len(expected)) <= 0.02 * len(expected) + 2, path.name


@pytest.mark.slow
@pytest.mark.parametrize(
    "policy", [{"scale": 1.0}, {}, {"max_side": 640}], ids=["exact", "bucketed", "max_side"]
)
def test_a_result_does_not_depend_on_the_rest_of_the_batch(
    detectors, dev_images, reference, policy
):
    odd = [p for p in reference[64] if p.suffix == ".png"]
    images = [open_image(p) for p in [*dev_images[:2], *odd]]
    assert len({im.shape for im in images}) == 4
    detector = detectors[64]
    together = detector.detect(images, **policy)
    for image, faces in zip(images, together, strict=True):
        assert_same_faces(faces, detector.detect([image], **policy)[0], score_tolerance=1e-4)


def test_pil_images_and_arrays_give_the_same_result(detectors, reference):
    path = next(p for p in reference[32] if p.name.startswith("odd_1"))
    pil = Image.open(path)
    from_pil, from_array = detectors[32].detect([pil, np.asarray(pil.convert("RGB"))], scale=1)
    np.testing.assert_array_equal(from_pil, from_array)
    assert_same_faces(from_pil, np.array(reference[32][path]))


def test_thresholds_and_max_faces(detectors, reference):
    path = next(p for p in reference[48] if p.name.startswith("odd_0"))
    image = open_image(path)
    (faces,) = detectors[48].detect([image], scale=1, score_threshold=0.9, max_faces=3)
    assert len(faces) == 3
    assert (faces[:, 4] > 0.9).all()
    assert (np.diff(faces[:, 4]) <= 0).all()


def test_boxes_are_mapped_back_to_the_original_size(detectors, dev_images):
    image = open_image(dev_images[0])
    (full,) = detectors[64].detect([image], scale=1, score_threshold=0.5)
    (half,) = detectors[64].detect([image], scale=0.5, score_threshold=0.5)
    # Large faces are found at both scales, at the same place in original pixels.
    big = full[(full[:, 2] - full[:, 0]) > 40]
    assert len(big) >= 5
    centres = (half[:, :2] + half[:, 2:4]) / 2
    for box in big:
        inside = (centres[:, 0] > box[0]) & (centres[:, 0] < box[2])
        inside &= (centres[:, 1] > box[1]) & (centres[:, 1] < box[3])
        assert inside.any()


def test_bad_inputs_raise_image_errors(detectors, tmp_path):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 definitely not a jpeg")
    with pytest.raises(ImageError):
        detectors[32].detect([bad])
    with pytest.raises(ImageError):
        detectors[32].detect([np.zeros((5, 5), dtype=np.float64)])
    with pytest.raises(OptionsError, match="score_threshold"):
        detectors[32].detect([np.zeros((5, 5, 3), np.uint8)], score_threshold=1.5)


def test_images_without_any_candidate(detectors):
    blank = np.zeros((480, 640, 3), np.uint8)
    for detector in detectors.values():
        (faces,) = detector.detect([blank], score_threshold=0.99)
        assert faces.shape == (0, 5)


def test_tiny_images_work(detectors, dev_images):
    photo = open_image(dev_images[0])
    tiny = [np.zeros((1, 1, 3), np.uint8), np.zeros((7, 300, 3), np.uint8)]
    results = detectors[64].detect([*tiny, photo], scale=1)
    # Blank slivers give no confident face, and the photo beside them keeps its own.
    for faces in results[:2]:
        assert faces.shape[1] == 5
        assert np.isfinite(faces).all()
        assert (faces[:, 4] < 0.5).all()
    (alone,) = detectors[64].detect([photo], scale=1)
    np.testing.assert_array_equal(results[2], alone)
    assert (alone[:, 4] >= 0.5).sum() >= 9


@pytest.mark.slow
def test_paper_protocol_finds_the_faces(detectors, dev_images):
    image = open_image(dev_images[0])
    (single,) = detectors[64].detect([image], score_threshold=0.5)
    (paper,) = detectors[64].detect([image], protocol="paper", score_threshold=0.5)
    assert len(paper) >= 9
    assert_same_faces(paper, single, min_score=0.9, min_iou=0.7, score_tolerance=0.1)
