"""Loss curves of a training stage: a CSV that grows row by row, and a PNG drawn from it.

``<run>/curves/<stage>.csv`` has one row per ``log_every`` steps: ``step``, ``seconds`` since the stage
started, ``lr`` and the stage's loss columns (each the mean over the steps since the previous row).
``plot_curves`` draws every loss column against the step on a log scale.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

__all__ = ["CurveWriter", "plot_curves", "read_curves"]


class CurveWriter:
    """Averages losses over ``every`` steps and appends a CSV row each time."""

    def __init__(self, path: Path, loss_names: Sequence[str], every: int) -> None:
        self.path = path
        self.names = list(loss_names)
        self.every = every
        self._sums = dict.fromkeys(self.names, 0.0)
        self._count = 0
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w", newline="") as f:
            csv.writer(f).writerow(["step", "seconds", "lr", *self.names])

    def add(self, step: int, seconds: float, lr: float, losses: dict[str, float]) -> dict[str, float] | None:
        """Record one step; every ``every`` steps write and return the averaged row."""
        for name in self.names:
            self._sums[name] += losses[name]
        self._count += 1
        if self._count < self.every:
            return None
        row = {name: self._sums[name] / self._count for name in self.names}
        with open(self.path, "a", newline="") as f:
            csv.writer(f).writerow([step, f"{seconds:.2f}", f"{lr:.3e}", *(f"{row[n]:.6g}" for n in self.names)])
        self._sums = dict.fromkeys(self.names, 0.0)
        self._count = 0
        return row


def read_curves(path: Path) -> dict[str, list[float]]:
    """Columns of a curve CSV as floats."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    return {name: [float(r[name]) for r in rows] for name in (rows[0].keys() if rows else [])}


def plot_curves(csv_path: Path, png_path: Path, title: str) -> Path:
    """Draw every loss column of ``csv_path`` against the step (log y) into ``png_path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = read_curves(csv_path)
    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    for name, values in cols.items():
        if name in ("step", "seconds", "lr"):
            continue
        ax.plot(cols["step"], values, label=name, linewidth=1.2)
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    png_path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png_path)
    plt.close(fig)
    return png_path
