"""Running ``python -m model`` as a user runs it, in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path


def run_cli(
    *args: str, env: dict | None = None, timeout: float = 300
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "model", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        check=False,
    )


@dataclass(frozen=True)
class User:
    """Someone with the package installed and nothing else: commands run in a folder of their
    own, outside the clone, with a home folder of their own (so an empty cache) and no
    ``EXTD_*`` variable but the weights mirror."""

    folder: Path
    home: Path
    mirror: Path

    @classmethod
    def new(cls, root: Path, mirror: Path) -> User:
        (root / "work").mkdir(parents=True)
        (root / "home").mkdir()
        return cls(root / "work", root / "home", mirror)

    @property
    def cache(self) -> Path:
        return self.home / ".cache" / "extd"

    def run(
        self, *args: str | Path, env: dict | None = None, timeout: float = 600
    ) -> subprocess.CompletedProcess:
        environ = {k: v for k, v in os.environ.items() if not k.startswith("EXTD_")}
        environ |= {"HOME": str(self.home), "EXTD_WEIGHTS_MIRROR": str(self.mirror)}
        return subprocess.run(
            [sys.executable, "-m", "model", *map(str, args)],
            cwd=self.folder,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=environ | (env or {}),
            check=False,
        )
