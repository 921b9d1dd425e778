"""Precision-recall curves of an evaluation, drawn to a PNG."""

from __future__ import annotations

from pathlib import Path

from model.errors import ExtdError
from model.eval.ap import EvalResult
from model.eval.split import SETTINGS


def plot_curves(result: EvalResult, path: str | Path, *, title: str = "") -> Path:
    """One panel per setting (easy, medium, hard), AP in the legend."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as error:
        raise ExtdError("plotting needs matplotlib: pip install 'extd-face[plot]'") from error
    figure, axes = plt.subplots(1, 3, figsize=(13, 4.2), sharey=True)
    for axis, setting in zip(axes, SETTINGS, strict=True):
        curve = result.curves[setting]
        axis.plot(curve.recall, curve.precision, label=f"AP {result.ap[setting]:.4f}")
        axis.set(title=setting, xlabel="recall", xlim=(0, 1), ylim=(0, 1.01))
        axis.grid(alpha=0.3)
        axis.legend(loc="lower left")
    axes[0].set_ylabel("precision")
    figure.suptitle(f"{title} ({result.images} images)".strip())
    figure.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path
