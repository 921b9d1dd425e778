"""The HTTP side of the several-process layout: a pipeline that hands uploads to the
inference process over a Unix socket.

With ``EXTD_HTTP_WORKERS`` above 1 (:mod:`service.fleet`), HTTP worker processes
parse and validate requests, and one inference process (:mod:`service.inference`)
owns the models, the Batcher and the decoders. Each call is one connection: a
length-prefixed pickle each way (the socket lives in a folder only this user
can open). A request that gives up (its client left, or the drain ran out)
closes its connection, and the inference process drops its images as the
single process would. Refusals travel as themselves, so every answer, 429 and
504 included, is the one the single process gives.
"""

from __future__ import annotations

import asyncio
import logging
import pickle
import socket
import struct
import threading
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

from service import errors
from service.config import Settings
from service.pipeline import Detection
from service.registry import ModelDescription, ReloadReport

log = logging.getLogger(__name__)

_LENGTH = struct.Struct(">Q")
# How often a waiting call looks at its HTTP client, and how often the workers ask the
# inference process how it is (its phase and models).
POLL_S, STATUS_S = 0.05, 2.0
T = TypeVar("T")


def frame(message: Any) -> bytes:
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    return _LENGTH.pack(len(data)) + data


async def read_frame(reader: asyncio.StreamReader) -> Any:
    (length,) = _LENGTH.unpack(await reader.readexactly(_LENGTH.size))
    return pickle.loads(await reader.readexactly(length))


def _unavailable(error: Exception) -> errors.InferenceUnavailable:
    return errors.InferenceUnavailable(
        f"the inference process cannot be reached ({type(error).__name__}); try again shortly"
    )


@dataclass
class Status:
    """What the inference process last said of itself."""

    phase: str = "loading"
    failure: str | None = None
    models: list[ModelDescription] = field(default_factory=list)
    default: str | None = None
    missing: set[str] = field(default_factory=set)


class InferenceClient:
    """Calls to the inference process at ``path``."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._open: set[asyncio.StreamWriter] = set()

    def call_blocking(self, request: dict[str, Any]) -> Any:
        """A call from a thread (status, reload)."""
        try:
            with socket.socket(socket.AF_UNIX) as connection:
                connection.connect(self.path)
                connection.sendall(frame(request))
                reader = connection.makefile("rb")
                (length,) = _LENGTH.unpack(reader.read(_LENGTH.size))
                answer = pickle.loads(reader.read(length))
        except (OSError, struct.error, EOFError, pickle.UnpicklingError) as error:
            raise _unavailable(error) from error
        return _result(answer)

    async def call(
        self, request: dict[str, Any], is_disconnected: Callable[[], Awaitable[bool]]
    ) -> Any:
        """A call from a request: given up (the connection closed) when its client leaves or
        :meth:`abandon` is called."""
        try:
            reader, writer = await asyncio.open_unix_connection(self.path)
        except OSError as error:
            raise _unavailable(error) from error
        self._open.add(writer)
        answer = asyncio.ensure_future(read_frame(reader))
        try:
            writer.write(frame(request))
            await writer.drain()
            while not (await asyncio.wait({answer}, timeout=POLL_S))[0]:
                if await is_disconnected():
                    raise errors.ClientClosed("client closed the connection")
            return _result(answer.result())
        except (asyncio.IncompleteReadError, ConnectionError) as error:
            if writer.is_closing():  # abandoned by the drain
                raise errors.ShuttingDown("the service stopped before this request ran") from error
            raise _unavailable(error) from error
        finally:
            answer.cancel()
            self._open.discard(writer)
            writer.close()

    def abandon(self) -> None:
        """Give up every call in flight: each is answered ``shutting_down``."""
        for writer in list(self._open):
            writer.close()


def _result(answer: dict[str, Any]) -> Any:
    if "refusal" in answer:
        raise answer["refusal"]
    if "error" in answer:
        raise RuntimeError(f"the inference process failed: {answer['error']}")
    return answer["result"]


class RemoteRegistry:
    """The inference process's models, as its last status said (what the routes read)."""

    def __init__(self, client: InferenceClient) -> None:
        self._client = client
        self.status = Status()

    @property
    def default_name(self) -> str | None:
        return self.status.default

    @property
    def missing_files(self) -> set[str]:
        return self.status.missing

    def describe(self) -> list[ModelDescription]:
        return list(self.status.models)

    def get(self, name: str) -> ModelDescription | None:
        return next((model for model in self.status.models if model.name == name), None)

    def refresh(self) -> ReloadReport:
        return self._client.call_blocking({"op": "reload"})


class RemotePipeline:
    """What the routes use of :class:`~service.pipeline.Pipeline`, run by the inference
    process: the model names, detection, and local pixel work (drawing, hiding, encoding)."""

    def __init__(self, settings: Settings, client: InferenceClient) -> None:
        self.settings = settings
        self.client = client
        self.registry = RemoteRegistry(client)
        self.work_pool = ThreadPoolExecutor(settings.decode_threads, thread_name_prefix="work")

    def model(self, name: str | None) -> ModelDescription:
        name = name or self.registry.default_name
        model = self.registry.get(name) if name else None
        if model is None:
            known = ", ".join(m.name for m in self.registry.describe()) or "none"
            raise errors.UnknownModel(f"no model {name!r} is loaded (loaded: {known})")
        return model

    async def detect(
        self,
        payloads: list[bytes],
        *,
        model: ModelDescription,
        is_disconnected: Callable[[], Awaitable[bool]],
        **options: Any,
    ) -> Detection:
        """The pipeline's detect, in the inference process (``options`` as it takes them)."""
        request = {"op": "detect", "payloads": payloads, "model": model.name, "options": options}
        return await self.client.call(request, is_disconnected)

    async def offload(self, work: Callable[..., T], *args: object) -> T:
        return await asyncio.get_running_loop().run_in_executor(self.work_pool, work, *args)

    def abandon(self) -> None:
        self.client.abandon()

    def close(self) -> None:
        self.work_pool.shutdown(wait=True, cancel_futures=True)


class RemoteEngine:
    """An HTTP worker's stand-in for :class:`~service.components.Engine`: no model here; it
    follows the inference process's phase and models."""

    def __init__(self, settings: Settings, socket_path: str) -> None:
        from service.components import build_job_store

        self.pipeline = RemotePipeline(settings, InferenceClient(socket_path))
        self.jobs = build_job_store(settings)  # jobs are created here, run there
        self._stopped = threading.Event()

    def load(
        self,
        *,
        warming: Callable[[], None],
        ready: Callable[[], None],
        failed: Callable[[str], None],
    ) -> None:
        """Follow the inference process in a daemon thread: its phase until it is ready, then
        its models (a reload there shows here within ``STATUS_S``)."""

        def follow() -> None:
            told = "loading"
            while not self._stopped.wait(POLL_S if told != "ready" else STATUS_S):
                try:
                    status = self.pipeline.client.call_blocking({"op": "status"})
                except errors.InferenceUnavailable:
                    continue  # starting, or restarting: the last status stands
                self.pipeline.registry.status = status
                if status.phase == told:
                    continue
                if status.phase == "warming":
                    warming()
                elif status.phase == "ready":
                    ready()
                elif status.phase == "failed":
                    failed(status.failure or "the inference process could not start")
                    return
                told = status.phase

        threading.Thread(target=follow, name="inference-status", daemon=True).start()

    def stop(self) -> None:
        self._stopped.set()
        self.pipeline.close()
