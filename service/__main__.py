"""``python -m service``: run the API with the settings from ``EXTD_*`` variables."""

from __future__ import annotations

import logging
import sys

from service.config import Settings
from service.server import serve


def main() -> None:
    settings = Settings()
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    sys.exit(serve(settings))


if __name__ == "__main__":
    main()
