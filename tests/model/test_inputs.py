"""The one input path: plans from headers, reduced-size decoding, the network batch."""

import numpy as np
import pytest
import samples
import torch
from helpers import FAST_FP32
from PIL import Image

from model.boxes import box_iou
from model.conventions import MEAN_RGB
from model.detector import Detector
from model.images import read_header
from model.inputs import decode, load, network_batch, plan_input, prepare
from model.options import PostprocessOptions, ScalePolicy


def test_buckets_depend_only_on_the_image():
    plan = plan_input((300, 500), ScalePolicy(), 128)
    assert (plan.size, plan.resized, plan.input_shape) == ((300, 500), (300, 500), (384, 512))
    assert plan_input((300, 500), ScalePolicy(scale=1), 128).input_shape == (300, 500)
    # Large photos shrink to the paper's area bound, never grow.
    big = plan_input((3000, 4000), ScalePolicy(), 128)
    assert big.resized == (1237, 1649)
    assert big.input_shape == (1280, 1664)
    assert plan_input((30, 40), ScalePolicy(max_side=640), 128).resized == (30, 40)


def test_min_face_shrinks_the_input_and_never_enlarges():
    plan = plan_input((768, 1024), ScalePolicy(min_face=64), 128)
    assert plan.resized == (240, 320)  # a 64-pixel face lands at RELIABLE_FACE (20) pixels
    assert plan.min_face == 64
    assert plan_input((768, 1024), ScalePolicy(min_face=8), 128).resized == (768, 1024)
    # With an exact scale, min_face only drops faces.
    assert plan_input((768, 1024), ScalePolicy(scale=1, min_face=64), 128).resized == (768, 1024)


def test_network_batch_is_mean_subtracted_padded_and_mirrored():
    pixels = np.zeros((2, 3, 3), np.uint8)
    pixels[:, 0] = 255
    plan = plan_input((2, 3), ScalePolicy(scale=1), 128)
    batch = network_batch([prepare(pixels, plan), prepare(pixels, plan, flip=True)], (4, 5))
    assert batch.shape == (2, 3, 4, 5)
    mean = torch.tensor(MEAN_RGB)
    torch.testing.assert_close(batch[0, :, 0, 0], 255 - mean)
    torch.testing.assert_close(batch[1, :, 0, 2], 255 - mean)  # mirrored
    torch.testing.assert_close(batch[0, :, 0, 1], -mean)
    assert batch[:, :, 2:, :].abs().sum() == 0  # padding stays zero
    assert batch[:, :, :, 3:].abs().sum() == 0


def test_load_plans_from_the_header_and_decodes_small(dev_images):
    photo = Image.open(dev_images[0]).convert("RGB").resize((4000, 3000))
    data = samples.encode(photo, "JPEG", quality=90)
    item = load(data, ScalePolicy(), 128)
    assert item.plan.size == read_header(data).size == (3000, 4000)
    assert item.plan.resized[0] <= item.pixels.shape[0] < 3000  # 1/2 or 1/4 of the size
    full = load(data, ScalePolicy(), 128, full_size=True)
    assert tuple(full.pixels.shape) == (3000, 4000, 3)
    assert full.plan == item.plan


@pytest.mark.slow
def test_jpegs_decoded_at_reduced_size_give_the_same_faces(release_weights, dev_images):
    """A 12 MP phone-sized JPEG is decoded at the DCT scale that still covers its network
    input, then resized exactly. Its faces are full decoding's: 96 % of those above 0.5
    again at IoU >= 0.9 (the rest moved a little: >= 0.8); the README has the AP."""
    detector = Detector(release_weights[64], backend=FAST_FP32)
    options = PostprocessOptions(score_threshold=0.3)
    best_iou = []
    for path in dev_images[:3]:
        photo = Image.open(path).convert("RGB").resize((4000, 3000), Image.Resampling.BICUBIC)
        data = samples.encode(photo, "JPEG", quality=90)
        plan = detector.plan(read_header(data).size, ScalePolicy())
        (full,) = detector.run([decode(data, plan, full_size=True)], [options])
        (reduced,) = detector.run([decode(data, plan)], [options])
        strong = torch.from_numpy(full[full[:, 4] >= 0.5, :4])
        best_iou += box_iou(strong, torch.from_numpy(reduced[:, :4])).max(dim=1).values.tolist()
    assert len(best_iou) >= 40
    assert sum(iou >= 0.9 for iou in best_iou) >= 0.96 * len(best_iou)
    assert min(best_iou) >= 0.8


def test_alpha_comes_beside_the_colours_the_network_sees_when_decoded_to_write():
    picture = samples.transparent_photo()
    data = samples.encode(picture, "PNG")
    plan = plan_input((120, 160), ScalePolicy(), 128)
    item = decode(data, plan, full_size=True)
    assert tuple(item.pixels.shape) == (120, 160, 3)
    np.testing.assert_array_equal(item.alpha, np.asarray(picture)[..., 3])
    assert network_batch([item], plan.input_shape).shape == (1, 3, 128, 256)
    assert decode(data, plan).alpha is None  # detection alone has no use for it
