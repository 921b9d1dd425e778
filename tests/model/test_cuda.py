"""The GPU path (skipped without CUDA): fp32 parity, bf16 accuracy, graphs and batching."""

import numpy as np
import pytest
import torch
from helpers import assert_same_faces

from model.detector import Detector
from model.eval import evaluate, load_split, predict_split
from model.images import open_image

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.fixture(autouse=True, scope="module")
def exact_fp32():
    # TF32 convolutions would not be fp32 any more.
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False


@pytest.mark.parametrize("backend", ["torch", "torch-fused"])
@pytest.mark.parametrize("width", [32, 48, 64])
def test_fp32_on_cuda_matches_the_release(release_weights, reference, width, backend):
    detector = Detector(release_weights[width], device="cuda", backend=backend)
    for path, expected in reference[width].items():
        (faces,) = detector.detect([open_image(path)], scale=1)
        assert_same_faces(faces, np.array(expected))


def test_bf16_graphs_keep_accuracy(release_weights, dev_split):
    split = load_split(dev_split).subset(40)
    fp32 = Detector(release_weights[64], device="cuda", backend="torch")
    bf16 = Detector(release_weights[64], device="cuda", backend="torch-bf16")
    ap_fp32 = evaluate(predict_split(fp32, split, progress=False), split).ap
    ap_bf16 = evaluate(predict_split(bf16, split, progress=False), split).ap
    for setting in ap_fp32:
        assert abs(ap_fp32[setting] - ap_bf16[setting]) <= 0.003, (ap_fp32, ap_bf16)


def test_graph_batches_give_each_image_its_own_result(release_weights, dev_images):
    detector = Detector(release_weights[32], device="cuda", backend="torch-bf16")
    images = [open_image(p) for p in dev_images[:3]]
    together = detector.detect(images, max_side=512, score_threshold=0.5)
    for image, faces in zip(images, together, strict=True):
        (alone,) = detector.detect([image], max_side=512, score_threshold=0.5)
        assert_same_faces(faces, alone, min_score=0.5, score_tolerance=2e-3)


def test_compiled_bf16_keeps_accuracy(release_weights, dev_split):
    split = load_split(dev_split).subset(40)
    fp32 = Detector(release_weights[64], device="cuda", backend="torch")
    compiled = Detector(release_weights[64], device="cuda", backend="torch-compiled")
    ap_fp32 = evaluate(predict_split(fp32, split, progress=False), split).ap
    ap_compiled = evaluate(predict_split(compiled, split, progress=False), split).ap
    for setting in ap_fp32:
        assert abs(ap_fp32[setting] - ap_compiled[setting]) <= 0.003, (ap_fp32, ap_compiled)


def test_jpegs_decoded_on_the_gpu_give_the_cpu_faces(release_weights, dev_images):
    pytest.importorskip("torchvision", reason="nvJPEG comes with torchvision")
    from model.gpu_jpeg import decode_jpegs
    from model.images import read_header
    from model.options import SERVING, ScalePolicy

    detector = Detector(release_weights[64], device="cuda", backend="torch")
    datas = [path.read_bytes() for path in dev_images[:3]]
    headers = [read_header(data) for data in datas]
    plans = [detector.plan(header.size, ScalePolicy()) for header in headers]
    on_gpu = detector.run(decode_jpegs(datas, headers, plans, detector.device), [SERVING] * 3)
    for data, faces in zip(datas, on_gpu, strict=True):
        (on_cpu,) = detector.run([detector.load(data, ScalePolicy(), full_size=True)], [SERVING])
        assert_same_faces(faces, on_cpu, min_score=0.5, min_iou=0.95, score_tolerance=0.02)
