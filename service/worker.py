"""``python -m service worker``: a process that runs video jobs and serves no HTTP.

It loads the models and runs one Batcher, like the API, then runs
``EXTD_JOB_WORKERS`` jobs at once (at least one) from the queue the API
processes fill (``EXTD_QUEUE_URL``, or the SQLite queue under
``EXTD_JOBS_DIR``). SIGTERM or Ctrl-C stops it: the jobs it runs stop at their
next frames and are queued again for the next worker, their run not counted.
"""

from __future__ import annotations

import logging
import signal
import threading

from model.errors import CheckpointError, WeightsError
from service.components import (
    StartupError,
    build_batcher,
    build_job_store,
    build_registry,
    load_models,
    tune_process,
    video_limits,
)
from service.config import Settings
from service.jobs.runner import JobRunner
from service.metrics import Metrics

log = logging.getLogger(__name__)

# Exit status when the worker could not start (no weights, no model).
STARTUP_FAILED = 3


def run_worker(settings: Settings) -> int:
    """Run jobs until SIGTERM or SIGINT; the process's exit status."""
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    tune_process(settings)
    metrics = Metrics()
    registry = build_registry(settings, metrics)
    try:
        load_models(settings, registry)
    except (StartupError, WeightsError, CheckpointError) as error:
        log.error("cannot start: %s", error)
        return STARTUP_FAILED
    batcher = build_batcher(settings, metrics, registry)
    runner = JobRunner(
        build_job_store(settings),
        registry,
        batcher,
        metrics,
        workers=max(1, settings.job_workers),
        limits=video_limits(settings),
    )
    if settings.watch_weights:
        registry.watch(settings.watch_interval_s, stop)
    runner.start()
    log.info("running video jobs: models %s", [model.name for model in registry.all()])
    stop.wait()
    log.info("stopping: running jobs are queued again")
    runner.stop(settings.drain_timeout_s)
    batcher.stop(settings.drain_timeout_s)
    return 0
