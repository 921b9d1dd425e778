"""``deface`` 1.5.0 (CenterFace, ONNX) as the benches compare with it, without installing it.

Its detections come from its own virtual environment: :data:`DETECT` runs
there (``python -c DETECT request.json``) and writes CenterFace's boxes (for
photos at a low threshold, so that every threshold is swept from one run; for
a clip at its default, its pure-Python NMS being slow on 1080p crowds), its
time per photo at its defaults, and on some photos the masks its own
``anonymize_frame`` draws. :func:`deface_mask` draws those masks here from
the boxes, the way ``anonymize_frame`` does (its ``scale_bb`` box, clipped;
an ellipse inside for blur, the box itself for ``--replacewith solid``); the
photo bench checks it against deface's own masks on every run.
"""

from __future__ import annotations

import numpy as np

# deface's defaults: threshold, --mask-scale (each side grows by 0.3 of the box: 1.6 in
# this project's terms).
THRESHOLD, MASK_SCALE = 0.2, 1.3
# The lowest threshold its boxes are kept at: every threshold above it can be swept.
LOWEST = 0.05


def deface_mask(
    dets: np.ndarray, shape: tuple[int, int], mask_scale: float = MASK_SCALE, ellipse: bool = True
) -> np.ndarray:
    """The pixels deface hides for detections ``dets`` (``x1 y1 x2 y2 score``) in an image of
    ``shape`` (h, w): an ellipse (blur, its default) or the box (``--replacewith solid``)."""
    height, width = shape
    mask = np.zeros(shape, bool)
    grow = mask_scale - 1.0
    for det in np.asarray(dets).reshape(-1, 5):
        x1, y1, x2, y2 = det[:4].astype(int)
        h, w = y2 - y1, x2 - x1
        x1, y1, x2, y2 = np.round([x1 - w * grow, y1 - h * grow, x2 + w * grow, y2 + h * grow])
        y1, y2 = max(0, int(y1)), min(height - 1, int(y2))
        x1, x2 = max(0, int(x1)), min(width - 1, int(x2))
        if not ellipse:  # cv2.rectangle, filled: both corners included
            mask[y1 : y2 + 1, x1 : x2 + 1] = True
            continue
        half_h, half_w = (y2 - y1) // 2, (x2 - x1) // 2
        if half_h <= 0 or half_w <= 0:
            continue
        # skimage.draw.ellipse(half_h, half_w, half_h, half_w): strictly inside
        rows = (np.arange(2 * half_h + 1) - half_h) / half_h
        cols = (np.arange(2 * half_w + 1) - half_w) / half_w
        inside = rows[:, None] ** 2 + cols[None, :] ** 2 < 1
        mask[y1 : y1 + inside.shape[0], x1 : x1 + inside.shape[1]] |= inside
    return mask


# Runs in deface's environment. The request (JSON): "photos" (paths) or "clip" (a video),
# "out" (an .npz to write), "check_every" (photos whose own masks are drawn too),
# "time_every" (photos timed at the defaults, one thread).
DETECT = r"""
import json, sys, time
import cv2, numpy as np, onnx, onnxruntime
from deface.centerface import CenterFace, default_onnx_path
from deface.deface import anonymize_frame

request = json.load(open(sys.argv[1]))
cv2.setNumThreads(1)
centerface = CenterFace()
assert centerface.backend == "onnxrt", "install onnx and onnxruntime beside deface"
options = onnxruntime.SessionOptions()  # its own session, rebuilt on one thread
options.intra_op_num_threads = options.inter_op_num_threads = 1
model = centerface.dynamicize_shapes(onnx.load(default_onnx_path)).SerializeToString()
centerface.sess = onnxruntime.InferenceSession(model, options, providers=["CPUExecutionProvider"])


def drawn(dets, frame, solid):
    # what deface's own drawing hides: the pixels it changes on a frame of noise
    noise = np.random.default_rng(0).integers(1, 255, frame.shape, dtype=np.uint8)
    out = noise.copy()
    anonymize_frame(dets, out, mask_scale=MASK_SCALE, replacewith="solid" if solid else "blur",
                    ellipse=True, draw_scores=False, replaceimg=None, mosaicsize=20)
    return np.packbits(np.any(out != noise, axis=2))


saved, times = {}, []
if "clip" in request:
    import imageio.v2 as imageio
    with imageio.get_reader(request["clip"]) as video:
        for index, frame in enumerate(video):
            saved[f"dets_{index}"] = centerface(frame, threshold=THRESHOLD)[0]
else:
    for index, path in enumerate(request["photos"]):
        frame = cv2.cvtColor(cv2.imread(path), cv2.COLOR_BGR2RGB)
        saved[f"dets_{index}"] = dets = centerface(frame, threshold=LOWEST)[0]
        if index % request["time_every"] == 0:
            start = time.perf_counter()
            found, _ = centerface(frame, threshold=THRESHOLD)
            anonymize_frame(found, frame.copy(), mask_scale=MASK_SCALE, replacewith="blur",
                            ellipse=True, draw_scores=False, replaceimg=None, mosaicsize=20)
            times.append((time.perf_counter() - start) * 1000)
        if index % request["check_every"] == 0:
            default = dets[dets[:, 4] > THRESHOLD]
            saved[f"ellipse_{index}"] = drawn(default, frame, solid=False)
            saved[f"solid_{index}"] = drawn(default, frame, solid=True)
np.savez_compressed(request["out"], times=np.array(times), **saved)
"""
DETECT = f"THRESHOLD, MASK_SCALE, LOWEST = {THRESHOLD}, {MASK_SCALE}, {LOWEST}\n" + DETECT
