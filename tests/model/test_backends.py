"""Every backend against the fp32 eager reference."""

import logging
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import HAS_NNCF, HAS_OPENVINO, assert_same_faces, needs_nncf, needs_openvino
from PIL import Image

from model.backends import AUTO_TOLERANCE, create_backend, resolve_backend
from model.backends import cpu as cpu_module
from model.backends.fused import fold_batchnorm
from model.backends.int8 import WINDOW, CalibrationSet
from model.checkpoint import read_checkpoint
from model.detector import Detector
from model.errors import BackendError, OptionsError
from model.eval import evaluate, faces_found, load_split, predict_split
from model.images import open_image
from model.options import RuntimeOptions
from model.weights import known_checkpoints

CPU = torch.device("cpu")

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


@pytest.fixture(scope="module")
def calibration(dev_split, tmp_path_factory, runtime) -> RuntimeOptions:
    """16 dev photos (every 50th) as the int8 calibration set."""
    folder = tmp_path_factory.mktemp("calibration")
    for image in sorted((dev_split / "images").rglob("*.jpg"))[::50][:16]:
        (folder / image.name).symlink_to(image)
    return replace(runtime, calibration_dir=folder, calibration_images=16)


@pytest.fixture(scope="module")
def split_40(dev_split):
    return load_split(dev_split).subset(40)


@pytest.fixture(scope="module")
def fp32_predictions(release_weights, split_40, runtime):
    detector = Detector(release_weights[64], backend="openvino", runtime=runtime)
    return predict_split(detector, split_40, scale=1.0)


@pytest.mark.slow
@needs_openvino
@pytest.mark.parametrize(
    ("backend", "points", "faces"),
    [("openvino-bf16", 0.3, 0.99), pytest.param("openvino-int8", 1.0, 0.95, marks=needs_nncf)],
)
def test_reduced_precision_keeps_accuracy(
    release_weights, split_40, fp32_predictions, calibration, backend, points, faces
):
    """AP within ``points`` of fp32, and that share of fp32's faces above 0.5 found again
    at IoU >= 0.9: bf16 0.3 point and 99 %, int8 1 point and 95 %. int8 noise moves small
    faces' boxes by a pixel; on 200 images it measured 0.24 point and 96.6 % (README), on
    these 40 one image more or less at a threshold moves AP by up to 0.8 point."""
    detector = Detector(release_weights[64], backend=backend, runtime=calibration)
    reduced = predict_split(detector, split_40, scale=1.0)
    ap_fp32, ap_fast = evaluate(fp32_predictions, split_40).ap, evaluate(reduced, split_40).ap
    for setting in ap_fp32:
        assert abs(ap_fp32[setting] - ap_fast[setting]) <= points / 100, (setting, ap_fp32, ap_fast)
    found = faces_found(fp32_predictions, reduced)
    assert found.fraction >= faces, f"{found.found} of {found.total} fp32 faces at IoU >= 0.9"


@pytest.mark.slow
@needs_openvino
@needs_nncf
def test_int8_is_quantized_once_per_checkpoint_and_calibration_set(
    release_weights, calibration, tmp_path
):
    # Four photos: quick, this checks the cache only.
    runtime = replace(calibration, cache_dir=tmp_path, calibration_images=4)
    checkpoint = read_checkpoint(release_weights[32])
    first = create_backend("openvino-int8", checkpoint, CPU, runtime)
    (cached,) = (tmp_path / "openvino").glob("int8-*.xml")
    written = cached.stat().st_mtime_ns
    second = create_backend("openvino-int8", checkpoint, CPU, runtime)
    assert cached.stat().st_mtime_ns == written  # read back, not quantized again
    # Not the calibration window: any size runs, the smallest too (OpenVINO's int8 kernels
    # answered differently on every call there: they run in fp32).
    for shape in ((96, 128), (64, 64), (32, 48)):
        x = torch.randn(1, 3, *shape) * 50
        for a, b in zip(first(x), second(x), strict=True):
            torch.testing.assert_close(a, b)
    # The recipe keeps the first convolution and the heads in float.
    convolutions = _convolution_inputs_quantized(cached)
    assert not any(quantized for name, quantized in convolutions.items() if "_heads." in name)
    assert not next(iter(convolutions.values()))  # the first, on the photo
    assert sum(convolutions.values()) == len(convolutions) - 1 - 12
    # Another calibration set is another model.
    create_backend("openvino-int8", checkpoint, CPU, replace(runtime, calibration_images=5))
    assert len(list((tmp_path / "openvino").glob("int8-*.xml"))) == 2
    assert cached.is_file()


def _convolution_inputs_quantized(xml: Path) -> dict[str, bool]:
    """Each convolution of an IR, in order, and whether its input passes a FakeQuantize."""
    import openvino

    model = openvino.Core().read_model(xml)
    return {
        op.get_friendly_name(): op.input_value(0).get_node().get_type_name() == "FakeQuantize"
        for op in model.get_ordered_ops()
        if op.get_type_name() in ("Convolution", "GroupConvolution")
    }


@needs_nncf
def test_calibration_photos_are_served_windows_decoded_one_at_a_time(tmp_path):
    """Prepared as served (a 1024x768 photo runs at its own size) and cut to the window, a
    photo at a time on every pass."""
    for name, size in (("wide.jpg", (1024, 768)), ("small.png", (200, 100))):
        pixels = np.random.default_rng(0).integers(0, 255, (size[1], size[0], 3), np.uint8)
        Image.fromarray(pixels).save(tmp_path / name)
    (tmp_path / "notes.txt").write_text("not a photo")
    calibration = CalibrationSet.from_folder(tmp_path, 300)
    assert [p.name for p in calibration.files] == ["small.png", "wide.jpg"]
    passes = iter(calibration)
    small, wide = next(passes), next(passes)
    assert small.shape == wide.shape == (1, 3, *WINDOW)
    assert np.all(small[:, :, 100:, :] == 0)  # padded
    assert np.all(small[:, :, :, 200:] == 0)
    assert np.count_nonzero(wide[0, 0]) > 0.99 * WINDOW[0] * WINDOW[1]  # the photo's centre
    assert [x.shape for x in calibration] == [(1, 3, *WINDOW)] * 2  # a second pass


def test_int8_without_calibration_photos_says_so(tmp_path):
    with pytest.raises(BackendError, match="EXTD_CALIBRATION_DIR"):
        CalibrationSet.from_options(RuntimeOptions(calibration_dir=tmp_path))


def float_backend() -> str:
    if not HAS_OPENVINO:
        return "torch-fused"
    from model.backends.openvino import supports_bf16

    return "openvino-bf16" if supports_bf16() else "openvino"


def test_auto_picks_per_checkpoint_what_keeps_its_accuracy(release_weights):
    """int8 where its measured hard AP loss is within 0.3 points (the manifest's, with the
    shipped calibration photos), float for the others and for checkpoints nobody measured."""
    cpu = torch.device("cpu")
    checkpoints = {w: read_checkpoint(release_weights[w]) for w in (32, 48, 64)}
    int8 = "openvino-int8" if HAS_OPENVINO and HAS_NNCF else float_backend()
    for entry in known_checkpoints().values():
        kept = entry.int8_hard_ap_loss is not None and entry.int8_hard_ap_loss <= AUTO_TOLERANCE
        chosen = resolve_backend("auto", cpu, checkpoints[entry.variant.width])
        assert chosen == (int8 if kept else float_backend()), entry.name
    fine_tuned = replace(checkpoints[32], state_dict={**checkpoints[32].state_dict})
    fine_tuned.state_dict["stem.conv.weight"] = fine_tuned.state_dict["stem.conv.weight"] * 1.01
    assert resolve_backend("auto", cpu, fine_tuned) == float_backend()  # not measured
    fine_tuned.training = {"int8_hard_ap_loss": 0.1}  # measured by whoever trained it
    assert resolve_backend("auto", cpu, fine_tuned) == int8
    fine_tuned.training = {"int8_hard_ap_loss": 0.5}
    assert resolve_backend("auto", cpu, fine_tuned) == float_backend()
    assert resolve_backend("auto", torch.device("cuda"), checkpoints[32]) == "torch-bf16"
    assert resolve_backend("torch", torch.device("cuda")) == "torch"


CPUINFO = """processor\t: 0
flags\t\t: fpu sse2 avx avx2 fma {more}
processor\t: 1
"""
AVX512 = "avx512f avx512bw avx512vl avx512dq"


@pytest.mark.parametrize(
    ("flags", "cap", "expected"),
    [
        ("", "", "avx2"),
        (AVX512, "", "avx512"),
        (f"{AVX512} avx512_vnni", "", "avx512_vnni"),
        (f"{AVX512} avx512_vnni avx512_bf16", "", "avx512_bf16"),
        (f"{AVX512} avx512_vnni avx512_bf16 amx_tile amx_int8 amx_bf16", "", "amx"),
        (f"{AVX512} avx512_vnni avx512_bf16 amx_tile amx_int8 amx_bf16", "avx2", "avx2"),
        (f"{AVX512} avx512_vnni avx512_bf16 amx_tile amx_int8 amx_bf16", "AVX512_CORE_VNNI",
         "avx512_vnni"),
        ("amx_tile amx_int8 amx_bf16", "", "avx2"),  # AMX without AVX-512: not a real CPU
    ],
)  # fmt: skip
def test_instruction_set_reads_the_cpu_flags_and_onednns_cap(
    tmp_path, monkeypatch, flags, cap, expected
):
    (tmp_path / "cpuinfo").write_text(CPUINFO.format(more=flags))
    monkeypatch.setattr(cpu_module, "CPUINFO", tmp_path / "cpuinfo")
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", cap)
    cpu_module.instruction_set.cache_clear()
    try:
        assert cpu_module.instruction_set() == expected
    finally:
        cpu_module.instruction_set.cache_clear()


def test_instruction_set_is_unknown_without_cpu_flags(tmp_path, monkeypatch):
    monkeypatch.setattr(cpu_module, "CPUINFO", tmp_path / "absent")
    cpu_module.instruction_set.cache_clear()
    try:
        assert cpu_module.instruction_set() is None
    finally:
        cpu_module.instruction_set.cache_clear()


AUTO_UNDER_CAP = """
import sys, torch
from model.backends import resolve_backend
from model.checkpoint import read_checkpoint

print(resolve_backend("auto", torch.device("cpu"), read_checkpoint(sys.argv[1])))
"""


@needs_openvino
@pytest.mark.skipif(
    cpu_module.instruction_set() not in ("avx512_bf16", "amx"), reason="needs a CPU with bf16"
)
@pytest.mark.slow
def test_auto_decides_per_instruction_set(release_weights):
    """Capped to AVX2 a bf16 CPU is decided for as one without bf16: bf16 there would run
    OpenVINO's reference kernels."""
    unmeasured = read_checkpoint(release_weights[32])
    unmeasured.state_dict["stem.conv.weight"] = unmeasured.state_dict["stem.conv.weight"] * 1.01
    chosen = {}
    for cap in ("", "AVX2"):
        run = subprocess.run(
            [sys.executable, "-c", AUTO_UNDER_CAP, str(release_weights[32])],
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, "ONEDNN_MAX_CPU_ISA": cap},
        )
        assert run.returncode == 0, run.stderr[-2000:]
        chosen[cap] = run.stdout.split()[-1]
    int8 = known_checkpoints()["extd-32"].int8_hard_ap_loss <= AUTO_TOLERANCE and HAS_NNCF
    assert chosen == (
        {"": "openvino-int8", "AVX2": "openvino-int8"}
        if int8
        else {"": "openvino-bf16", "AVX2": "openvino"}
    )


@needs_openvino
@needs_nncf
@pytest.mark.slow
def test_auto_falls_back_to_float_without_calibration_photos(release_weights, tmp_path, caplog):
    runtime = RuntimeOptions(cache_dir=tmp_path / "cache", calibration_dir=tmp_path)
    with caplog.at_level(logging.WARNING, logger="model.backends"):
        backend = create_backend("auto", read_checkpoint(release_weights[32]), CPU, runtime)
    assert backend.name == float_backend()
    assert "running fpn-32-prelu in float instead" in caplog.text
    assert "EXTD_CALIBRATION_DIR" in caplog.text


def test_bad_backend_choices(release_weights, runtime):
    checkpoint = read_checkpoint(release_weights[32])
    with pytest.raises(OptionsError, match="unknown backend"):
        create_backend("tensorrt-9000", checkpoint, CPU, runtime)
    if HAS_OPENVINO:
        with pytest.raises(BackendError, match="runs on the CPU"):
            create_backend("openvino", checkpoint, torch.device("cuda"), runtime)


@needs_openvino
@pytest.mark.slow
def test_openvino_conversion_is_cached_by_checkpoint_hash(release_weights, tmp_path):
    runtime = RuntimeOptions(cache_dir=tmp_path)
    checkpoint = read_checkpoint(release_weights[32])
    first = create_backend("openvino", checkpoint, CPU, runtime)
    cached = tmp_path / "openvino" / f"{checkpoint.sha256}.xml"
    assert cached.is_file()
    stamp = cached.stat().st_mtime_ns
    second = create_backend("openvino-bf16", checkpoint, CPU, runtime)
    assert cached.stat().st_mtime_ns == stamp
    x = torch.randn(1, 3, 64, 96) * 50
    reference = checkpoint.build()(x)
    for backend, tolerance in ((first, 1e-3), (second, 0.3)):
        for a, b in zip(backend(x), reference, strict=True):
            torch.testing.assert_close(a, b.detach(), atol=tolerance, rtol=0.05)


@needs_openvino
@pytest.mark.slow
def test_openvino_batches_match_single_images(release_weights, runtime):
    backend = create_backend("openvino", read_checkpoint(release_weights[64]), CPU, runtime)
    batch = torch.randn(5, 3, 96, 128) * 50
    together = backend(batch)
    singles = [backend(image[None]) for image in batch]
    alone = [torch.cat(parts) for parts in zip(*singles, strict=True)]
    for a, b in zip(together, alone, strict=True):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)


OUT_OF_ORDER_RELEASE = """
import gc, os, signal, sys
from pathlib import Path
import torch
from model.backends import create_backend
from model.checkpoint import read_checkpoint
from model.options import RuntimeOptions

checkpoint = read_checkpoint(sys.argv[1])
runtime = RuntimeOptions(cache_dir=Path(sys.argv[2]))
first = create_backend("openvino", checkpoint, torch.device("cpu"), runtime)
second = create_backend("openvino-bf16", checkpoint, torch.device("cpu"), runtime)
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
@pytest.mark.slow
def test_releasing_openvino_models_out_of_order_keeps_signals_safe(release_weights, runtime):
    """OpenVINO's CPU plugin swaps the thread's signal stack; one core keeps it valid."""
    script = [OUT_OF_ORDER_RELEASE, str(release_weights[32]), str(runtime.cache_dir)]
    run = subprocess.run(
        [sys.executable, "-c", *script],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.split() == ["handled"]
