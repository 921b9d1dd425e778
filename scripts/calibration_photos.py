"""Build the int8 calibration photos shipped in ``model/calibration`` from licence-clean sources.

    python scripts/calibration_photos.py --skimage-data DIR [--matplotlib-data DIR]

Sources (public domain or CC0, listed with their licences in
``model/calibration/README.md``): scikit-image's sample photos (``DIR`` is
its ``skimage/data`` folder, from the installed package or unzipped from its
wheel) and matplotlib's ``grace_hopper.jpg``. The originals are kept as
they are (shrunk to 1024 pixels at most); "crowds" paste the three
portraits many times, at sizes that put their faces between 10 and 120
pixels, on the other photos: the small faces the network is tuned for,
which no single portrait has. Seeded: the same sources give the same files.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

import model

OUT = Path(model.__file__).resolve().parent / "calibration"
PORTRAITS = {"astronaut.png": 0.30, "camera.png": 0.25, "grace_hopper.jpg": 0.33}  # face / height
SCENES = ["coffee.png", "chelsea.png", "rocket.jpg", "hubble_deep_field.jpg", "grass.png"]
CROWDS = 8
SIZE = (1024, 768)


def _open(folders: list[Path], name: str) -> Image.Image:
    for folder in folders:
        if (folder / name).is_file():
            return Image.open(folder / name).convert("RGB")
    raise SystemExit(f"{name} is in none of {', '.join(map(str, folders))}")


def _shrunk(image: Image.Image, longest: int = 1024) -> Image.Image:
    factor = min(1.0, longest / max(image.size))
    size = (round(image.width * factor), round(image.height * factor))
    return image.resize(size, Image.Resampling.LANCZOS)


def crowd(scene: Image.Image, portraits: list[tuple[Image.Image, float]], rng) -> Image.Image:
    """Portraits pasted on a scene, front rows larger: faces of 10 to 120 pixels."""
    canvas = scene.resize(SIZE, Image.Resampling.LANCZOS)
    rows = 5
    for row in range(rows):
        face = 10 * (12 ** (row / (rows - 1)))  # 10 px at the back, 120 px in front
        top = int(SIZE[1] * (0.05 + 0.8 * row / rows))
        x = int(rng.integers(0, 40))
        while x < SIZE[0]:
            portrait, share = portraits[int(rng.integers(len(portraits)))]
            height = max(8, round(face * rng.uniform(0.8, 1.25) / share))
            width = round(portrait.width * height / portrait.height)
            tile = portrait.resize((width, height), Image.Resampling.LANCZOS)
            if rng.random() < 0.5:
                tile = tile.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
            canvas.paste(tile, (x, top + int(rng.integers(-height // 8, height // 8 + 1))))
            x += int(width * rng.uniform(0.7, 1.3))
    return canvas


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--skimage-data", type=Path, required=True)
    parser.add_argument(
        "--matplotlib-data",
        type=Path,
        help="matplotlib's mpl-data/sample_data (default: the installed package's)",
    )
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    if args.matplotlib_data is None:
        import matplotlib

        args.matplotlib_data = Path(matplotlib.get_data_path()) / "sample_data"
    folders = [args.skimage_data, args.matplotlib_data]
    args.out.mkdir(parents=True, exist_ok=True)
    for name in [*PORTRAITS, *SCENES]:
        target = args.out / f"{Path(name).stem}.jpg"
        _shrunk(_open(folders, name)).save(target, quality=80)
    portraits = [(_open(folders, name), share) for name, share in PORTRAITS.items()]
    rng = np.random.default_rng(2019)
    for index in range(CROWDS):
        scene = _open(folders, SCENES[index % len(SCENES)])
        crowd(scene, portraits, rng).save(args.out / f"crowd-{index}.jpg", quality=80)
    print(args.out)


if __name__ == "__main__":
    main()
