"""The service core without a web app: planning refusals, decoding, queueing, deadlines."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest
import samples
from in_process import RANDOM_MODELS

from model.options import PostprocessOptions, ScalePolicy
from service import errors
from service.batching import Batcher, Ticket
from service.components import build_registry
from service.config import Settings
from service.metrics import Metrics
from service.pipeline import Pipeline


@pytest.fixture(scope="module")
def pipeline(random_weights) -> Iterator[Pipeline]:
    settings = Settings(
        weights_dir=random_weights,
        backend="torch",
        max_input_pixels=200_000,
        max_request_pixels=1_000_000,
        queue_size=2,
    )
    metrics = Metrics()
    registry = build_registry(settings, metrics)
    registry.refresh(warm=False)
    batcher = Batcher(
        max_batch_size=4,
        max_batch_delay_s=0.001,
        capacity=settings.queue_size,
        metrics=metrics,
        steady_shapes=set,
        release_idle_s=10,
    )
    batcher.start()
    running = Pipeline(settings, registry, batcher, metrics)
    yield running
    batcher.stop(5)
    running.close()


async def never() -> bool:
    return False


def detect(pipeline: Pipeline, payloads: list[bytes], **options):
    options = {"timeout_ms": None, **options}
    return asyncio.run(
        pipeline.detect(
            payloads,
            model=pipeline.model(options.pop("model", None)),
            options=PostprocessOptions(score_threshold=0.01),
            policy=options.pop("policy", ScalePolicy()),
            is_disconnected=never,
            **options,
        )
    )


def test_faces_come_back_per_image_with_plans(pipeline):
    detection = detect(pipeline, [samples.photo(160, 120), samples.photo(64, 48, "PNG")])
    assert detection.sizes == [(120, 160), (48, 64)]
    assert [len(f.shape) for f in detection.faces] == [2, 2]
    assert detection.items[0].plan.input_shape == (128, 256)
    assert detection.timings_ms["total"] >= detection.timings_ms["decode"]
    # both images ran in their own forward pass: each stage is the longer one's
    for stage in ("resize", "network", "postprocess"):
        assert detection.timings_ms[stage] == max(i.timings_ms[stage] for i in detection.items)


def test_models_are_looked_up_by_name(pipeline):
    assert pipeline.model(None).name == "extd-64"
    assert pipeline.model("other").name == "other"
    with pytest.raises(errors.UnknownModel, match="loaded: " + ", ".join(RANDOM_MODELS)):
        pipeline.model("nope")


def test_refusals_come_from_the_headers(pipeline):
    model = pipeline.model(None)

    def plan(payloads, policy):
        return pipeline.plan(pipeline.read_headers(payloads), model, policy)

    with pytest.raises(errors.InputTooLarge) as refused:
        plan([samples.photo(64, 64), samples.photo(640, 480)], ScalePolicy())
    assert (refused.value.index, refused.value.limit) == (1, 200_000)
    small = ScalePolicy(max_side=64)
    with pytest.raises(errors.RequestTooLarge):
        plan([samples.photo(1000, 600)] * 2, small)
    with pytest.raises(errors.UnsupportedImage) as bad:
        plan([samples.photo(), b"GIF89a broken"], small)
    assert bad.value.index == 1
    with pytest.raises(errors.UnsupportedImage, match="animated GIF") as animated:
        plan([samples.photo(), samples.animation("GIF")], small)
    assert animated.value.index == 1
    assert len(plan([samples.photo(640, 480)], small)) == 1


def test_a_deadline_longer_than_the_drain_is_refused(pipeline):
    with pytest.raises(errors.InvalidParameters, match="EXTD_DRAIN_TIMEOUT_S"):
        detect(pipeline, [samples.photo()], timeout_ms=61_000)


def test_a_full_queue_refuses_before_decoding(pipeline):
    with pipeline.batcher.reserve(2, 0, time.monotonic() + 60), pytest.raises(errors.QueueFull):
        detect(pipeline, [samples.photo()])


def test_a_request_that_gave_up_is_not_decoded(pipeline):
    photo = samples.photo()
    (plan,) = pipeline.plan(pipeline.read_headers([photo]), pipeline.model(None), ScalePolicy())
    with pytest.raises(errors.DeadlineExceeded):
        pipeline.decode_one(0, photo, plan, Ticket(time.monotonic() - 1))
    with pytest.raises(errors.DeadlineExceeded):
        pipeline.decode_one(0, photo, plan, Ticket(time.monotonic() + 60, cancelled="disconnected"))
    assert pipeline.decode_one(0, photo, plan, Ticket(time.monotonic() + 60)).plan == plan
