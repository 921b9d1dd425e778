"""Running a Detector over a WIDER split to produce a prediction set."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
from tqdm import tqdm

from model.conventions import corners_to_prediction
from model.detector import Detector, Protocol
from model.eval.predictions import image_key
from model.eval.split import WiderSplit
from model.images import open_image

CHUNK = 8


def predict_split(
    detector: Detector,
    split: WiderSplit,
    *,
    protocol: Protocol = "single",
    scale: float | None = None,
    max_side: int | None = None,
    max_area: int | None = None,
    min_face: int | None = None,
    progress: bool = True,
) -> dict[str, np.ndarray]:
    """``{<event>/<stem>: (n, 5) x y w h score}`` at the release's thresholds.

    Images are decoded on worker threads and detected ``CHUNK`` at a time, so
    images of one size bucket share a forward pass.
    """
    predictions = {}
    names = list(split.images)
    with (
        ThreadPoolExecutor(max_workers=2) as pool,
        tqdm(total=len(names), desc="detect", unit="img", disable=not progress) as bar,
    ):
        for start in range(0, len(names), CHUNK):
            chunk = names[start : start + CHUNK]
            arrays = list(pool.map(open_image, [split.image_path(n) for n in chunk]))
            results = detector.detect(
                arrays,
                scale=scale,
                max_side=max_side,
                max_area=max_area,
                min_face=min_face,
                protocol=protocol,
            )
            for name, faces in zip(chunk, results, strict=True):
                predictions[image_key(name)] = corners_to_prediction(faces)
            bar.update(len(chunk))
    return predictions
