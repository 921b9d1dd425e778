"""Every backend against the fp32 eager reference."""

import subprocess
import sys

import numpy as np
import pytest
import torch
from helpers import HAS_OPENVINO, assert_same_faces, needs_openvino

from model.backends import create_backend, resolve_backend
from model.backends.fused import fold_batchnorm
from model.checkpoint import read_checkpoint
from model.detector import Detector
from model.eval import evaluate, faces_found, load_split, predict_split
from model.images import open_image

FP32 = ["torch-fused", pytest.param("openvino", marks=needs_openvino)]


def test_folding_batch_norm_keeps_the_outputs(release_weights):
    network = read_checkpoint(release_weights[32]).build()
    folded = fold_batchnorm(network)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    x = torch.randn(2, 3, 97, 131) * 60
    with torch.no_grad():
        for a, b in zip(network(x), folded(x), strict=True):
            torch.testing.assert_close(a, b, atol=2e-4, rtol=1e-4)


def test_folding_keeps_per_use_statistics_of_a_trained_network():
    from model.network import EXTD
    from model.variants import Variant

    torch.manual_seed(0)
    network = EXTD(Variant("fpn", 48, "leaky")).train()
    with torch.no_grad():
        network(torch.randn(2, 3, 96, 96) * 50)  # every use records its own statistics
    network.eval()
    folded = fold_batchnorm(network)
    x = torch.randn(1, 3, 80, 112) * 60
    with torch.no_grad():
        for a, b in zip(network(x), folded(x), strict=True):
            torch.testing.assert_close(a, b, atol=2e-4, rtol=1e-4)


@pytest.mark.slow
@pytest.mark.parametrize("backend", FP32)
def test_fp32_backends_match_the_release(release_weights, reference, backend):
    detector = Detector(release_weights[64], backend=backend)
    assert detector.backend.name == backend
    for path, expected in reference[64].items():
        (faces,) = detector.detect([open_image(path)], scale=1)
        assert_same_faces(faces, np.array(expected))


@pytest.mark.slow
@needs_openvino
def test_reduced_precision_keeps_accuracy(release_weights, dev_split):
    """AP within 0.3 points of fp32, and the fp32 faces found again (see the README for bf16)."""
    split = load_split(dev_split).subset(40)
    fp32 = Detector(release_weights[64], backend="openvino")
    fast = Detector(release_weights[64], backend="openvino-bf16")
    reference = predict_split(fp32, split, scale=1.0, progress=False)
    reduced = predict_split(fast, split, scale=1.0, progress=False)
    ap_fp32, ap_fast = evaluate(reference, split).ap, evaluate(reduced, split).ap
    for setting in ap_fp32:
        assert abs(ap_fp32[setting] - ap_fast[setting]) <= 0.003, (setting, ap_fp32, ap_fast)
    found = faces_found(reference, reduced)
    assert found.fraction >= 0.99, f"{found.found} of {found.total} fp32 faces found at IoU >= 0.9"


def test_auto_picks_a_fast_backend():
    expected = "openvino" if HAS_OPENVINO else "torch-fused"
    assert resolve_backend("auto", torch.device("cpu")) == expected
    assert resolve_backend("auto", torch.device("cuda")) == "torch-bf16"
    assert resolve_backend("torch", torch.device("cuda")) == "torch"


def test_bad_backend_choices(release_weights):
    checkpoint = read_checkpoint(release_weights[32])
    with pytest.raises(ValueError, match="unknown backend"):
        create_backend("tensorrt-9000", checkpoint, torch.device("cpu"))
    if HAS_OPENVINO:
        with pytest.raises(ValueError, match="runs on the CPU"):
            create_backend("openvino", checkpoint, torch.device("cuda"))


@needs_openvino
def test_openvino_conversion_is_cached_by_checkpoint_hash(release_weights, tmp_path, monkeypatch):
    monkeypatch.setenv("EXTD_CACHE_DIR", str(tmp_path))
    checkpoint = read_checkpoint(release_weights[32])
    first = create_backend("openvino", checkpoint, torch.device("cpu"))
    cached = tmp_path / "openvino" / f"{checkpoint.sha256}.xml"
    assert cached.is_file()
    stamp = cached.stat().st_mtime_ns
    second = create_backend("openvino-bf16", checkpoint, torch.device("cpu"))
    assert cached.stat().st_mtime_ns == stamp
    x = torch.randn(1, 3, 64, 96) * 50
    reference = checkpoint.build()(x)
    for backend, tolerance in ((first, 1e-3), (second, 0.3)):
        for a, b in zip(backend(x), reference, strict=True):
            torch.testing.assert_close(a, b.detach(), atol=tolerance, rtol=0.05)


@needs_openvino
def test_openvino_batches_split_across_streams_match_single_images(release_weights):
    backend = create_backend("openvino", read_checkpoint(release_weights[64]), torch.device("cpu"))
    batch = torch.randn(5, 3, 96, 128) * 50
    together = backend(batch)
    singles = [backend(image[None]) for image in batch]
    alone = [torch.cat(parts) for parts in zip(*singles, strict=True)]
    for a, b in zip(together, alone, strict=True):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)


OUT_OF_ORDER_RELEASE = """
import gc, os, signal, sys
import torch
from model.backends import create_backend
from model.checkpoint import read_checkpoint

checkpoint = read_checkpoint(sys.argv[1])
first = create_backend("openvino", checkpoint, torch.device("cpu"))
second = create_backend("openvino-bf16", checkpoint, torch.device("cpu"))
del first
gc.collect()
del second
gc.collect()
handled = []
signal.signal(signal.SIGCHLD, lambda *_: handled.append(True))
if os.fork() == 0:
    os._exit(0)
os.wait()
print("handled" if handled else "no signal")
"""


@needs_openvino
def test_releasing_openvino_models_out_of_order_keeps_signals_safe(release_weights):
    """OpenVINO's CPU plugin swaps the thread's signal stack; one core keeps it valid."""
    run = subprocess.run(
        [sys.executable, "-c", OUT_OF_ORDER_RELEASE, str(release_weights[32])],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.split() == ["handled"]
