"""``python -m service``: the API; ``python -m service worker``: video jobs without HTTP.

Both take their settings from ``EXTD_*`` variables (:class:`service.config.Settings`).
With ``EXTD_HTTP_WORKERS`` above 1 the API is several processes (:mod:`service.fleet`),
which start themselves with the ``inference`` and ``http`` roles.
"""

from __future__ import annotations

import argparse
import logging
import socket
import sys
from pathlib import Path

from service.config import Settings

ROLES = {
    "api": "serve HTTP (the default)",
    "worker": "run video jobs from the queue, no HTTP",
    "inference": "own the models for the HTTP workers (started by the API with several of them)",
    "http": "serve HTTP for the inference process (started by the API with several of them)",
}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m service", description=__doc__)
    parser.add_argument(
        "role",
        nargs="?",
        choices=tuple(ROLES),
        default="api",
        help="; ".join(f"{role}: {text}" for role, text in ROLES.items()),
    )
    parser.add_argument("--socket", type=Path, help="the inference process's Unix socket")
    parser.add_argument("--fd", type=int, help="the listening socket an HTTP worker serves on")
    args = parser.parse_args()
    if args.role in ("inference", "http") and args.socket is None:
        parser.error(f"the {args.role} role needs --socket")
    settings = Settings()
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    sys.exit(run(args, settings))


def run(args: argparse.Namespace, settings: Settings) -> int:
    if args.role == "worker":
        from service.worker import run_worker

        return run_worker(settings)
    if args.role == "inference":
        from service.inference import run_inference

        return run_inference(settings, args.socket)
    from service.server import serve

    if args.role == "http":
        listening = socket.socket(fileno=args.fd)
        return serve(settings, listening=listening, inference_socket=str(args.socket))
    if settings.http_workers > 1:
        from service.fleet import Fleet

        return Fleet(settings).run()
    return serve(settings)


if __name__ == "__main__":
    main()
