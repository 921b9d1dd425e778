"""Where the tests, benchmarks and scripts find the released weights and the WIDER dev split.

Each file is looked for in ``EXTD_SHARED_DIR``, then ``../shared`` beside the
repository (the maintainers' copy), then the folder ``python -m model data
fetch`` fills. Nothing of it is ever copied into the repository.
"""

from __future__ import annotations

import os
from pathlib import Path

from model.commands.data.fetch import default_root
from model.options import RuntimeOptions

REPO = Path(__file__).resolve().parents[1]
FETCH_HINT = "run `python -m model data fetch` (or set EXTD_SHARED_DIR)"
DEV_SPLIT = ("data", "wider_val_dev")
# A real 1024x768 crowd photo of the dev split, the benchmarks' default image.
GROUP_PHOTO = (*DEV_SPLIT, "images", "12--Group", "12_Group_Group_12_Group_Group_12_182.jpg")


def data_roots() -> list[Path]:
    return [
        *(Path(p) for p in [os.environ.get("EXTD_SHARED_DIR")] if p),
        REPO.parent / "shared",
        default_root(RuntimeOptions.from_environment(os.environ).cache_dir),
    ]


def find(*parts: str) -> Path | None:
    """The first data root holding ``parts``, or None."""
    for root in data_roots():
        if (path := root.joinpath(*parts)).exists():
            return path
    return None


def require(*parts: str) -> Path:
    """Like :func:`find`, for scripts: exits with the fetch hint when the data is nowhere."""
    path = find(*parts)
    if path is None:
        raise SystemExit(f"needs {'/'.join(parts)}: {FETCH_HINT}")
    return path
