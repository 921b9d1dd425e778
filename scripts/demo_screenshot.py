"""The README's picture of the try-it page: a live service, Chromium, one public-domain photo.

    python scripts/demo_screenshot.py PHOTO [--out docs/demo.png]

PHOTO should be free to publish: the README's is scikit-image's ``astronaut``
(a NASA portrait of Eileen Collins, public domain), ``skimage/data/astronaut.png``
in the scikit-image wheel. Needs Playwright and Debian's ``chromium``.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

from PIL import Image
from playwright.sync_api import sync_playwright

from tools import data
from tools.launcher import launch


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("photo", type=Path)
    parser.add_argument("--out", type=Path, default=Path("docs/demo.png"))
    parser.add_argument("--mirror", help="released weights folder (default: found data)")
    args = parser.parse_args()
    mirror = str(args.mirror or data.require("weights"))
    with tempfile.TemporaryDirectory() as folder:
        server = launch(Path(folder), {"EXTD_WEIGHTS_MIRROR": mirror})
        try:
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(
                    executable_path=shutil.which("chromium"),
                    args=["--disable-gpu", "--no-first-run", "--disable-background-networking"],
                )
                page = browser.new_page(viewport={"width": 1100, "height": 760})
                page.goto(f"{server.url}/")
                page.set_input_files("#files", str(args.photo))
                page.wait_for_function(
                    "document.querySelector('#status').textContent.startsWith('Done')"
                )
                shot = Path(folder) / "page.png"
                page.screenshot(path=shot)
                browser.close()
        finally:
            server.stop()
        args.out.parent.mkdir(parents=True, exist_ok=True)
        # A palette PNG keeps the picture sharp and the repository small.
        Image.open(shot).convert("RGB").quantize(colors=128).save(args.out, optimize=True)
    print(args.out, args.out.stat().st_size, "bytes")


if __name__ == "__main__":
    main()
