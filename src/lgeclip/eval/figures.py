"""Figures shared by the demo, evaluation and ablation (matplotlib, Agg backend)."""

from __future__ import annotations

import csv
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def read_metrics(run: Path) -> list[dict[str, float]]:
    """Rows of a run's ``metrics.csv`` as floats (missing cells dropped)."""
    path = Path(run) / "metrics.csv"
    if not path.exists():
        return []
    rows = []
    with path.open(newline="") as f:
        for r in csv.DictReader(f):
            rows.append({k: float(v) for k, v in r.items() if v not in ("", None)})
    return rows


def plot_training_curves(runs: dict[str, Path], out_png: Path) -> Path:
    """Training loss and validation balanced accuracy per epoch for each named run, side by side."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for name, run in runs.items():
        rows = read_metrics(run)
        if not rows:
            continue
        ep = [r["epoch"] for r in rows]
        axes[0].plot(ep, [r.get("train_loss", float("nan")) for r in rows], marker="o", ms=3, label=name)
        val = [(r["epoch"], r["val_balanced_accuracy"]) for r in rows if "val_balanced_accuracy" in r]
        if val:
            axes[1].plot(*zip(*val, strict=True), marker="o", ms=3, label=name)
    axes[0].set(title="training loss", xlabel="epoch")
    axes[1].set(title="validation balanced accuracy (patients)", xlabel="epoch", ylim=(0.0, 1.02))
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, dpi=110)
    plt.close(fig)
    return out_png
