"""Time-to-quality curves of training runs: digit accuracy and Fréchet distance against training minutes.

A curve is a list of points, one per evaluated weights file (a --snapshot-minutes snapshot or a run's
final EMA), as benchmarks/bench_train_recipes.py writes them:
`{"minutes": float, "step": int, "acc": {domain: 0..1}, "fd": {domain: >= 0}, "fd_real_vs_real": {...}}`.
"""

from __future__ import annotations

from difflab.data import DOMAINS
from difflab.viz import save_figure

DOMAIN_NAMES = {"mnistm": "MNIST-M", "svhn": "SVHN"}


def plot_time_to_quality(curves: dict[str, list[dict]], path, title: str | None = None) -> None:
    """One PNG: accuracy (top row) and Fréchet distance (bottom row, log scale) per domain against
    training minutes, one line per run; the dashed line is the real-vs-real Fréchet floor at the same
    sample size (a model cannot be told apart from real data below it)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, len(DOMAINS), figsize=(4.2 * len(DOMAINS), 6.4), squeeze=False)
    floor = None
    for name, points in curves.items():
        points = sorted(points, key=lambda p: p["minutes"])
        minutes = [p["minutes"] for p in points]
        for col, m in enumerate(DOMAINS):
            axes[0][col].plot(minutes, [p["acc"][m] for p in points], marker="o", ms=3, label=name)
            axes[1][col].plot(minutes, [p["fd"][m] for p in points], marker="o", ms=3, label=name)
        floor = floor or points[-1].get("fd_real_vs_real")
    for col, m in enumerate(DOMAINS):
        axes[0][col].set(title=f"{DOMAIN_NAMES[m]}: own-classifier accuracy", xlabel="training minutes",
                         ylabel="accuracy")
        axes[1][col].set(title=f"{DOMAIN_NAMES[m]}: Fréchet distance to real", xlabel="training minutes",
                         ylabel="Fréchet (log)", yscale="log")
        if floor:
            axes[1][col].axhline(floor[m], color="grey", ls="--", lw=1, label="real vs real")
        for row in (0, 1):
            axes[row][col].grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
    axes[1][0].legend(fontsize=7)
    save_figure(fig, path, title)
