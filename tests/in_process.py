"""In-process apps over randomly initialised checkpoints: the HTTP contract, with no data.

The service runs as it does in production (lifespan, loader thread,
batching worker), inside the test process through FastAPI's ``TestClient``.
The networks are random, so these apps check the contract (parameters,
problems, limits, auth), not faces; the subprocess servers with the released
weights (:mod:`live_server`) check faces, signals and memory.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from starlette.testclient import TestClient

from model.checkpoint import Checkpoint, save_checkpoint
from model.network import EXTD
from model.variants import Variant
from service.app import create_app
from service.config import Settings
from service.state import ServiceState, service_state

# Model name -> variant of the random checkpoints; extd-64 is the default name.
RANDOM_MODELS = {"extd-64": "fpn-32-prelu", "other": "fpn-32-relu"}


def write_random_weights(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    for name, variant in RANDOM_MODELS.items():
        network = EXTD(Variant.parse(variant)).eval()
        checkpoint = Checkpoint.from_network(network, source="random init")
        save_checkpoint(checkpoint, folder / f"{name}.safetensors")
    return folder


@contextmanager
def running_app(weights: Path, **settings) -> Iterator[TestClient]:
    """The app over ``weights`` with ``settings``, started (lifespan) and ready."""
    config = Settings(
        **{
            "weights_dir": weights,
            "jobs_dir": weights.parent / f"jobs-{time.monotonic_ns()}",
            "pull_missing": False,
            "watch_weights": False,
            "backend": "torch",
            "warm_sizes": (),
            **settings,
        }
    )
    with TestClient(create_app(config), raise_server_exceptions=False) as client:
        deadline = time.monotonic() + 60
        while client.get("/readyz").status_code != 200:
            assert time.monotonic() < deadline, client.get("/readyz").json()
            time.sleep(0.02)
        yield client


def state_of(client: TestClient) -> ServiceState:
    return service_state(client.app)
