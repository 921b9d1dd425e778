"""The try-it page in a real browser (Debian's Chromium, driven by Playwright) against the
live server: the boxes it draws are the faces ``/v1/detect`` returns."""

from __future__ import annotations

import shutil

import httpx
import pytest
from PIL import Image

sync_api = pytest.importorskip("playwright.sync_api", reason="needs playwright (the dev extra)")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# Without these, Chromium reaches for Google's hosts at every start (no network here).
QUIET = [
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def browser():
    if CHROMIUM is None:
        pytest.skip("needs Chromium: apt-get install chromium")
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=QUIET)
        yield launched
        launched.close()


def api_faces(server, image: bytes, threshold: float) -> int:
    response = httpx.post(
        f"{server.url}/v1/detect",
        params={"score_threshold": threshold},
        files={"images": ("a.jpg", image)},
        timeout=120,
    )
    return len(response.json()["results"][0]["faces"])


def wait_for_count(page, expected: int) -> None:
    page.wait_for_function(
        "n => document.querySelector('#face-count').textContent === String(n)"
        " && document.querySelector('#status').textContent.startsWith('Done')",
        arg=expected,
        timeout=120_000,
    )


@pytest.mark.slow
def test_the_page_draws_the_faces_the_api_finds(server, browser, dev_images, tmp_path):
    photo = dev_images[2]  # a rally: faces at every score
    image = photo.read_bytes()
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(f"{server.url}/")
    page.wait_for_function("document.querySelectorAll('#model option').length === 3")
    assert page.locator("#model").input_value() == "extd-64"

    page.set_input_files("#files", str(photo))
    expected = api_faces(server, image, 0.5)
    wait_for_count(page, expected)
    assert page.locator("[data-face]").count() == expected >= 20
    assert '"model": "extd-64"' in page.text_content("#json")
    assert "curl" in page.text_content("#curl")

    page.locator("#threshold").fill("0.9")
    stricter = api_faces(server, image, 0.9)
    assert stricter < expected
    wait_for_count(page, stricter)
    assert page.locator("[data-face]").count() == stricter
    page.screenshot(path=tmp_path / "page.png", full_page=True)
    assert (tmp_path / "page.png").stat().st_size > 10_000

    page.set_input_files(
        "#files", files=[{"name": "notes.txt", "mimeType": "text/plain", "buffer": b"no image"}]
    )
    page.wait_for_selector("#error:not([hidden])")
    assert "not an image" in page.text_content("#error-detail")
    assert page.text_content("#error-title") == "Unsupported Media Type"
    assert page.locator("[data-face]").count() == 0
    page.close()


@pytest.mark.slow
def test_the_page_anonymizes_and_offers_the_result(server, browser, dev_images, tmp_path):
    photo = dev_images[0]
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(f"{server.url}/")
    page.check("input[name=mode][value=anonymize]")
    assert page.locator("#hiding").is_visible()
    assert page.locator("#threshold").input_value() == "0.5"
    page.select_option("#method", "solid")
    page.set_input_files("#files", str(photo))
    params = {"score_threshold": 0.5, "method": "solid", "shape": "box", "mask_scale": 1.2}
    response = httpx.post(
        f"{server.url}/v1/anonymize",
        params=params,
        files={"image": ("a.jpg", photo.read_bytes())},
        timeout=120,
    )
    expected = int(response.headers["x-faces"])
    wait_for_count(page, expected)
    assert expected >= 9
    assert "hidden" in page.text_content("#results h2")
    with page.expect_download() as download:
        page.click("a.download")
    saved = tmp_path / download.value.suggested_filename
    download.value.save_as(saved)
    assert saved.name.endswith("-anonymized.jpg")
    assert Image.open(saved).size == Image.open(photo).size
    assert "-F image=@" in page.text_content("#curl")
    page.close()


@pytest.mark.slow
def test_the_page_is_labelled_keyboard_usable_and_fits_a_phone(server, browser):
    page = browser.new_page(viewport={"width": 390, "height": 844})  # a phone
    page.goto(f"{server.url}/")
    for control in (
        "files",
        "model",
        "threshold",
        "min-face",
        "max-side",
        "api-key",
        "method",
        "mask-scale",
    ):
        assert page.locator(f"#{control}").evaluate("e => e.labels.length > 0"), control
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    reached = set()
    for _ in range(15):
        page.keyboard.press("Tab")
        reached.add(page.evaluate("document.activeElement.id"))
    assert {"drop", "files", "model", "threshold", "max-side"} <= reached
    page.close()


def test_a_setting_turns_the_page_off():
    from starlette.testclient import TestClient

    from service.app import create_app
    from service.config import Settings

    def status(settings: Settings, path: str) -> int:
        return TestClient(create_app(settings)).get(path).status_code  # no lifespan: no models

    assert status(Settings(), "/") == 200
    assert status(Settings(), "/static/demo.js") == 200
    assert status(Settings(web_ui=False), "/") == 404
    assert status(Settings(web_ui=False), "/static/demo.js") == 404
