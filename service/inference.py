"""``python -m service inference``: the process that owns the models in the several-process
layout (``EXTD_HTTP_WORKERS`` above 1, started by :mod:`service.fleet`).

It holds what a single process holds (:class:`~service.components.Engine`: the
models, the one Batcher, the decoders, this process's video jobs) and serves
the HTTP workers (:mod:`service.remote`) on a Unix socket: its status, the
pipeline's ``detect``, a reload of the weights folder. A call whose connection
closes is a request whose client left: its images are dropped as they would be
in one process. On SIGTERM (sent once the HTTP workers have drained) it stops
its jobs and exits.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import signal
from pathlib import Path
from typing import Any

from service import errors
from service.components import Engine
from service.config import Settings
from service.lifecycle import Lifecycle
from service.metrics import Metrics
from service.remote import Status, frame, read_frame

log = logging.getLogger(__name__)

# Exit status when the models could not be loaded.
STARTUP_FAILED = 3


class InferenceServer:
    def __init__(self, settings: Settings, socket_path: Path) -> None:
        self.settings = settings
        self.socket_path = socket_path

    async def run(self) -> int:
        """Serve until SIGTERM or SIGINT; the process's exit status."""
        metrics = Metrics()
        self.lifecycle = lifecycle = Lifecycle(metrics)
        self.engine = engine = Engine(self.settings, metrics)
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)

        def failed(message: str) -> None:
            lifecycle.fail(message)
            stop.set()

        engine.load(
            warming=lambda: loop.call_soon_threadsafe(lifecycle.enter, "warming"),
            ready=lambda: loop.call_soon_threadsafe(lifecycle.enter, "ready"),
            failed=lambda message: loop.call_soon_threadsafe(failed, message),
        )
        server = await asyncio.start_unix_server(self._serve, path=str(self.socket_path))
        os.chmod(self.socket_path, 0o600)
        try:
            await stop.wait()
        finally:
            server.close()
            await server.wait_closed()
            await asyncio.to_thread(engine.stop)
            log.info("stopped")
        return STARTUP_FAILED if lifecycle.failure else 0

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await read_frame(reader)
            answer = await self._answer(request, reader)
            writer.write(frame(answer))
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass  # the HTTP worker gave the call up
        finally:
            writer.close()

    async def _answer(self, request: dict[str, Any], reader: asyncio.StreamReader) -> dict:
        try:
            return {"result": await self._call(request, reader)}
        except errors.Refusal as refusal:
            return {"refusal": refusal}
        except Exception as error:  # a bug: the HTTP worker answers 500, this process goes on
            log.exception("call %s failed", request.get("op"))
            return {"error": f"{type(error).__name__}: {error}"}

    async def _call(self, request: dict[str, Any], reader: asyncio.StreamReader) -> Any:
        registry, pipeline = self.engine.registry, self.engine.pipeline
        if request["op"] == "status":
            lifecycle = self.lifecycle
            return Status(
                phase=lifecycle.phase,
                failure=lifecycle.failure,
                models=registry.describe(),
                default=registry.default_name,
                missing=set(registry.missing_files),
            )
        if not self.lifecycle.ready:
            raise errors.InferenceUnavailable(f"the models are not ready: {self.lifecycle.phase}")
        if request["op"] == "reload":
            return await asyncio.to_thread(registry.refresh)
        if request["op"] != "detect":
            raise ValueError(f"unknown call {request['op']!r}")
        left = asyncio.ensure_future(reader.read(1))  # the connection closes: given up

        async def is_disconnected() -> bool:
            return left.done()

        try:
            detection = await pipeline.detect(
                request["payloads"],
                model=pipeline.model(request["model"]),
                is_disconnected=is_disconnected,
                **request["options"],
            )
        finally:
            left.cancel()
        return dataclasses.replace(detection, model=detection.model.description)


def run_inference(settings: Settings, socket_path: Path) -> int:
    return asyncio.run(InferenceServer(settings, socket_path).run())
