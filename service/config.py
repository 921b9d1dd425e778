"""Every tunable of the service, read from ``EXTD_*`` environment variables."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from model.options import BACKENDS, DetectorOptions, RuntimeOptions, ScalePolicy, help_text

_DETECTOR = DetectorOptions()
_RUNTIME = RuntimeOptions()


class Settings(BaseSettings):
    """Service configuration; each field is also the env var ``EXTD_<NAME>``."""

    model_config = SettingsConfigDict(env_prefix="EXTD_", env_file=None, extra="ignore")

    host: str = Field("127.0.0.1", description="interface to bind (0.0.0.0 in containers)")
    port: int = Field(8000, ge=0, le=65535, description="port to listen on")
    log_level: Literal["debug", "info", "warning", "error"] = Field(
        "info", description="debug, info, warning or error"
    )

    weights_dir: Path | None = Field(
        _RUNTIME.weights_dir,
        description="every .pth and .safetensors checkpoint here is loaded, and the released "
        "ones are pulled here when it has none (default: weights in EXTD_CACHE_DIR)",
    )
    weights_mirror: str | None = Field(
        _RUNTIME.weights_mirror, description=help_text(RuntimeOptions, "weights_mirror")
    )
    cache_dir: Path = Field(_RUNTIME.cache_dir, description=help_text(RuntimeOptions, "cache_dir"))
    calibration_dir: Path | None = Field(
        _RUNTIME.calibration_dir,
        description=help_text(RuntimeOptions, "calibration_dir")
        + " (default: the licence-clean photos shipped in model/calibration)",
    )
    calibration_images: int = Field(
        _RUNTIME.calibration_images,
        ge=1,
        description=help_text(RuntimeOptions, "calibration_images"),
    )
    tune_allocator: bool = Field(
        _RUNTIME.tune_allocator, description=help_text(RuntimeOptions, "tune_allocator")
    )
    pull_missing: bool = Field(
        True, description="pull the released checkpoints when the weights folder has none"
    )
    default_model: str | None = Field(
        None, description="model used when a request names none (default: extd-64 if loaded)"
    )
    watch_weights: bool = Field(
        True, description="load new or changed checkpoints without a restart"
    )
    watch_interval_s: float = Field(
        2.0, gt=0, description="how often the weights folder is scanned, in seconds"
    )
    web_ui: bool = Field(True, description="serve the try-it page at /")
    admin_token: SecretStr | None = Field(
        None, description="bearer token for /v1/admin endpoints (disabled when unset)"
    )
    api_keys: SecretStr | None = Field(
        None,
        description="comma-separated API keys that /v1/* requires "
        "(Authorization: Bearer or X-API-Key); open when neither this nor the file is set",
    )
    api_keys_file: Path | None = Field(
        None, description="API keys, one per line; a line sha256:<hex> stores only the key's hash"
    )
    api_rate_per_s: float = Field(
        0.0, ge=0, description="requests a second per API key (0: no limit)"
    )
    api_burst: int = Field(20, ge=1, description="requests a key may make at once above its rate")
    protect_metrics: bool = Field(False, description="/metrics needs an API key too")
    forwarded_allow_ips: str = Field(
        "",
        description="proxies whose X-Forwarded-For names the client (comma-separated addresses "
        "or networks, * for any); empty: none, the socket's peer is the client",
    )

    device: str = Field(_DETECTOR.device, description=help_text(DetectorOptions, "device"))
    backend: Literal[BACKENDS] = Field(  # type: ignore[valid-type]
        _DETECTOR.backend, description=help_text(DetectorOptions, "backend")
    )
    bucket_step: int = Field(
        _DETECTOR.bucket_step, ge=32, description=help_text(DetectorOptions, "bucket_step")
    )

    min_face: int | None = Field(
        None,
        ge=1,
        description=help_text(ScalePolicy, "min_face")
        + " (the default of requests; a request's min_face replaces it, 0 asks for every face)",
    )

    warm_sizes: Annotated[tuple[tuple[int, int], ...], NoDecode] = Field(
        ((1024, 768), (768, 1024), (1280, 720), (720, 1280)),
        description="image sizes (WIDTHxHEIGHT, comma-separated) whose input shapes the default "
        "model runs before /readyz turns 200 (and keeps buffers for): 4:3 and 16:9, both ways up",
    )
    max_batch_size: int = Field(
        _DETECTOR.batch_size, ge=1, description=help_text(DetectorOptions, "batch_size")
    )
    max_batch_pixels: int = Field(
        _DETECTOR.batch_pixels, ge=1, description=help_text(DetectorOptions, "batch_pixels")
    )
    max_batch_delay_ms: float = Field(
        5.0, ge=0, description="how long the worker waits to fill a batch"
    )
    queue_size: int = Field(64, ge=1, description="images waiting at most; beyond, 429")
    request_timeout_ms: int = Field(
        30_000, ge=1, description="default deadline of a request (timeout_ms overrides it)"
    )
    drain_timeout_s: float = Field(
        60.0,
        gt=0,
        description="on SIGTERM, how long accepted work may take to finish; also the longest "
        "deadline a request may ask for",
    )

    max_body_bytes: int = Field(
        32 * 1024 * 1024, ge=1024, description="larger request bodies get 413"
    )
    max_image_pixels: int = Field(
        50_000_000, ge=1, description="larger images are refused before decoding"
    )
    max_request_pixels: int = Field(
        64_000_000, ge=1, description="decoded pixels of a request's images together, at most"
    )
    max_input_pixels: int = Field(
        _DETECTOR.batch_pixels,
        ge=1,
        description="network input pixels per image (after scale or max_side), at most",
    )
    release_idle_s: float = Field(
        10.0,
        gt=0,
        description="after an input size that was not warmed up, how long the worker must be "
        "idle before the models give back the memory they kept for it",
    )
    max_header_bytes: int = Field(
        32 * 1024, ge=1024, description="request headers together, at most; beyond, 431"
    )
    max_images_per_request: int = Field(16, ge=1, description="images in one request at most")

    jobs_dir: Path = Field(
        Path("jobs"),
        description="video jobs' uploads and results (a shared volume when several processes "
        "serve), and the embedded queue's SQLite file when EXTD_QUEUE_URL is unset",
    )
    queue_url: str | None = Field(
        None,
        pattern=r"^rediss?://",
        description="the video jobs' queue and their state in Redis (redis://host:port/db); "
        "unset: an embedded SQLite queue under EXTD_JOBS_DIR, for one machine",
    )
    job_workers: int = Field(
        1,
        ge=0,
        description="video jobs this process runs at once (0: API only; `python -m service "
        "worker` runs jobs without HTTP)",
    )
    max_queued_jobs: int = Field(
        20, ge=1, description="video jobs waiting to run at most; beyond, 429 too_many_jobs"
    )
    job_max_attempts: int = Field(
        3,
        ge=1,
        description="runs a video job gets when its worker dies under it (killed, out of "
        "memory); then it fails",
    )
    job_lease_s: float = Field(
        30.0,
        ge=2,
        description="a running video job whose worker has not reported for this long is "
        "given to another worker",
    )
    job_retention_s: float = Field(
        24 * 3600.0, gt=0, description="finished video jobs are removed this long after"
    )
    max_video_bytes: int = Field(
        512 * 1024 * 1024, ge=1024, description="larger video uploads get 413"
    )
    max_video_seconds: float = Field(
        600.0, gt=0, description="longer videos get 413 (read from the container)"
    )

    http_workers: int = Field(
        1,
        ge=1,
        description="HTTP processes in front of one inference process that owns the models "
        "and the batcher (for a GPU host); 1: one process does both",
    )
    torch_threads: int | None = Field(
        None, ge=1, description="intra-op threads (default: all cores)"
    )
    decode_threads: int = Field(
        default_factory=lambda: min(8, os.cpu_count() or 1),
        ge=1,
        description="image decoding processes (default: the cores, at most 8)",
    )

    def runtime(self) -> RuntimeOptions:
        """The model package's runtime options, as these settings give them."""
        return RuntimeOptions(
            cache_dir=self.cache_dir,
            weights_dir=self.weights_dir,
            weights_mirror=self.weights_mirror,
            calibration_dir=self.calibration_dir,
            calibration_images=self.calibration_images,
            tune_allocator=self.tune_allocator,
        )

    @model_validator(mode="after")
    def _weights_folder(self) -> Settings:
        """The folder the model package resolves registry names in, whatever the default."""
        self.weights_dir = self.runtime().weights_folder
        return self

    @model_validator(mode="after")
    def _deadlines_fit_the_drain(self) -> Settings:
        if self.request_timeout_ms > self.drain_timeout_s * 1000:
            raise ValueError(
                "request_timeout_ms must fit in drain_timeout_s: a shutdown would cut "
                "requests that are still within their deadline"
            )
        return self

    @field_validator("warm_sizes", mode="before")
    @classmethod
    def _parse_sizes(cls, value: object) -> object:
        """``"1024x768,768x1024"`` -> ``((1024, 768), (768, 1024))``; empty means none."""
        if not isinstance(value, str):
            return value
        try:
            return tuple(
                tuple(int(v) for v in size.lower().split("x"))
                for size in value.replace(" ", "").split(",")
                if size
            )
        except ValueError as error:
            raise ValueError(f"expected WIDTHxHEIGHT[,WIDTHxHEIGHT...], got {value!r}") from error
