"""Running the app under uvicorn: a drain on SIGTERM, and an exit status that says how it went.

uvicorn alone closes its port on SIGTERM and, after its graceful timeout,
answers whatever is still running with a plain-text 500. Here the first
SIGTERM (or Ctrl-C) drains first (see :mod:`service.lifecycle`), and only
then lets uvicorn close; a second one is uvicorn's own (Ctrl-C twice forces).
"""

from __future__ import annotations

import asyncio
import json
import signal
import socket
from types import FrameType

import h11
import uvicorn
from fastapi import FastAPI
from uvicorn.protocols.http.h11_impl import H11Protocol

from service.app import create_app
from service.config import Settings
from service.lifecycle import SETTLE_S, Lifecycle
from service.problems import MEDIA_TYPE
from service.state import ServiceState, service_state

# Exit status when the service could not start serving (no weights, no model).
STARTUP_FAILED = 3


class ProblemH11Protocol(H11Protocol):
    """What h11 cannot parse (a malformed request, headers over the limit) is answered with a
    problem document too, not uvicorn's plain text."""

    def send_400_response(self, msg: str) -> None:
        body = json.dumps(
            {
                "type": "about:blank",
                "title": "Bad Request",
                "status": 400,
                "detail": f"{msg} (malformed, or headers over EXTD_MAX_HEADER_BYTES)",
                "code": "invalid_request",
            }
        ).encode()
        headers = [
            (b"content-type", MEDIA_TYPE.encode()),
            (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"),
        ]
        for event in (
            h11.Response(status_code=400, headers=headers, reason=b"Bad Request"),
            h11.Data(data=body),
            h11.EndOfMessage(),
        ):
            self.transport.write(self.conn.send(event))
        self.transport.close()


class DrainingServer(uvicorn.Server):
    def __init__(self, app: FastAPI, settings: Settings) -> None:
        super().__init__(
            uvicorn.Config(
                app,
                host=settings.host,
                port=settings.port,
                log_level=settings.log_level,
                # The drain has already let accepted work finish; this only bounds the close.
                timeout_graceful_shutdown=int(SETTLE_S),
                # h11 bounds the request line and headers (httptools takes any size).
                http=ProblemH11Protocol,
                h11_max_incomplete_event_size=settings.max_header_bytes,
                # The client is the socket's peer unless a trusted proxy says otherwise.
                proxy_headers=bool(settings.forwarded_allow_ips),
                forwarded_allow_ips=settings.forwarded_allow_ips or None,
            )
        )
        self.app = app
        self.settings = settings
        self._loop: asyncio.AbstractEventLoop | None = None
        self._draining = False

    @property
    def state(self) -> ServiceState:
        return service_state(self.app)

    @property
    def lifecycle(self) -> Lifecycle:
        return self.state.lifecycle

    async def serve(self, sockets=None) -> None:
        self._loop = asyncio.get_running_loop()
        await super().serve(sockets)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self._draining or self._loop is None or sig not in (signal.SIGTERM, signal.SIGINT):
            super().handle_exit(sig, frame)
            return
        self._draining = True
        self._loop.call_soon_threadsafe(lambda: self._loop.create_task(self._drain()))

    async def _drain(self) -> None:
        if not await self.lifecycle.drain(self.settings.drain_timeout_s):
            # Out of time: what still waits is answered 503 shutting_down, never dropped.
            if self.state.pipeline is not None:
                self.state.pipeline.abandon()
            await self.lifecycle.drain(SETTLE_S)
        self.should_exit = True

    async def on_tick(self, counter: int) -> bool:
        if self.lifecycle.failure:
            return True
        return await super().on_tick(counter)


def serve(
    settings: Settings,
    *,
    listening: socket.socket | None = None,
    inference_socket: str | None = None,
) -> int:
    """Serve until stopped; the process's exit status. An HTTP worker of the several-process
    layout serves on the supervisor's ``listening`` socket, its models in the inference
    process at ``inference_socket``."""
    app = create_app(settings, inference_socket=inference_socket)
    DrainingServer(app, settings).run(sockets=[listening] if listening else None)
    return STARTUP_FAILED if service_state(app).lifecycle.failure else 0
