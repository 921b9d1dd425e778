"""Decoding in worker processes: a slow image is abandoned at its deadline, decoders and all."""

from __future__ import annotations

import io
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import samples
from helpers import assert_problem, upload
from in_process import running_app
from metrics_text import sample
from PIL import Image

from model.errors import ImageError
from service.decoding import DecoderPool, DecodersStopped, DecodeTimeout


@pytest.fixture(scope="module")
def slow_jpeg() -> bytes:
    """A 36 MP progressive JPEG (7 MB): a third of a second or more to decode here."""
    rng = np.random.default_rng(0)
    small = rng.integers(0, 256, (375, 375, 3), dtype=np.uint8)
    image = Image.fromarray(small).resize((6000, 6000), Image.Resampling.BILINEAR)
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=95, progressive=True)
    return buffer.getvalue()


@pytest.fixture
def pool():
    decoders = DecoderPool(1)
    yield decoders
    decoders.close()


def test_decodes_like_open_image_and_reports_bad_images(pool):
    photo = samples.photo(64, 48)
    pixels = pool.decode(photo, at_least=None, max_pixels=None, deadline=time.monotonic() + 30)
    assert pixels.shape == (48, 64, 3)
    with pytest.raises(ImageError, match="not an image"):
        pool.decode(b"text", at_least=None, max_pixels=None, deadline=time.monotonic() + 30)


def test_a_decode_past_its_deadline_is_killed_and_the_decoder_replaced(pool, slow_jpeg):
    started = time.monotonic()
    with pytest.raises(DecodeTimeout) as timeout:
        pool.decode(slow_jpeg, at_least=None, max_pixels=None, deadline=started + 0.05)
    assert timeout.value.killed
    assert time.monotonic() - started < 1.0
    photo = samples.photo()
    pixels = pool.decode(photo, at_least=None, max_pixels=None, deadline=time.monotonic() + 30)
    assert pixels.shape == (120, 160, 3)


def test_closing_stops_running_decodes(pool, slow_jpeg):
    with ThreadPoolExecutor(1) as thread:
        running = thread.submit(
            pool.decode, slow_jpeg, at_least=None, max_pixels=None, deadline=time.monotonic() + 60
        )
        time.sleep(0.1)
        pool.close()
        with pytest.raises(DecodersStopped):
            running.result(timeout=10)


def test_slow_uploads_never_hold_the_decoders_past_their_deadline(random_weights, slow_jpeg):
    """Two slow images (as many as there are decoders) with a short deadline, and an ordinary
    photo behind them: the slow ones get 504 at their deadline, the photo its answer."""
    with running_app(random_weights, decode_threads=2) as app, ThreadPoolExecutor(3) as clients:
        slow = [
            clients.submit(app.post, "/v1/detect", params={"timeout_ms": 300}, **upload(slow_jpeg))
            for _ in range(2)
        ]
        time.sleep(0.05)
        started = time.monotonic()
        ordinary = app.post("/v1/detect", **upload(samples.photo()))
        waited = time.monotonic() - started
        for future in slow:
            assert_problem(future.result(), 504, "deadline_exceeded")
        assert ordinary.status_code == 200, ordinary.text
        assert waited < 5
        assert sample(app.get("/metrics").text, "extd_decodes_abandoned_total") >= 1
