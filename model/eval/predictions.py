"""Prediction folders in the official WIDER format: ``<event>/<stem>.txt``.

Each file holds the image name, the number of faces, then one
``x y w h score`` line per face. Predictions are keyed by ``<event>/<stem>``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from model.errors import DataError


def image_key(name: str) -> str:
    """``0--Parade/0_Parade_x.jpg`` -> ``0--Parade/0_Parade_x``."""
    return str(Path(name).with_suffix(""))


def write_predictions(folder: str | Path, predictions: dict[str, np.ndarray]) -> None:
    """Write ``{key: (n, 5) x y w h score}`` as an official prediction folder."""
    folder = Path(folder)
    for key, faces in predictions.items():
        path = folder / f"{key}.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        lines = [Path(key).name, str(len(faces))]
        lines += [f"{x:.2f} {y:.2f} {w:.2f} {h:.2f} {s:.6f}" for x, y, w, h, s in faces]
        path.write_text("\n".join(lines) + "\n")


def read_predictions(folder: str | Path) -> dict[str, np.ndarray]:
    """Read an official prediction folder; the count line is not trusted, the rows are."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder}: no such prediction folder")
    predictions = {}
    for path in sorted(folder.glob("*/*.txt")):
        rows = path.read_text().splitlines()[2:]
        try:
            values = [
                [float(v) for v in row.replace(",", " ").split()[:5]] for row in rows if row.strip()
            ]
            faces = np.array(values, dtype=np.float64).reshape(-1, 5)
        except ValueError as error:
            raise DataError(f"{path}: expected 'x y w h score' lines ({error})") from error
        predictions[f"{path.parent.name}/{path.stem}"] = faces
    return predictions
