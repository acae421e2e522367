"""Time-to-quality curves of training runs: digit accuracy and Fréchet distance against training minutes.

A curve is a list of points, one per evaluated weights file (a --snapshot-minutes snapshot or a run's
final EMA), each from `quality_point`: the one fixed evaluation of the recipe search
(benchmarks/bench_train_recipes.py), the release gate (scripts/release_gate.py) and the report.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from difflab.data import DOMAINS
from difflab.digits.evaluate import evaluate
from difflab.digits.generate import GenerateConfig, generate, resolve
from difflab.digits.info import checkpoint_info
from difflab.models.digits import load_digit_model
from difflab.viz import save_figure

DOMAIN_NAMES = {"mnistm": "MNIST-M", "svhn": "SVHN"}


def run_record(path) -> dict:
    """{"wall_s", "legs", "step"} of a weights file, as `digits info` reads them (the shipped teacher's
    from its documented history); None where unrecorded."""
    train = checkpoint_info(path)["train"]
    return {"wall_s": train["wall_s"], "legs": train["legs"], "step": train["steps"]}


def quality_point(path, per_digit: int = 20, seed: int = 0, classifiers: dict | None = None,
                  data_root=None, progress: bool = False) -> dict:
    """Judge one digit model ('teacher', 'student' or a .safetensors) the fixed way: `digits generate` at
    its defaults (DDIM 20, guidance 3) with `seed`, `per_digit` images per digit and domain, then `digits
    eval` (own classifiers). Returns {"file", "minutes" (training minutes, None if unrecorded), "step",
    "acc": {domain: 0..1}, "fd": {domain: Fréchet to real val}, "fd_real_vs_real": {domain: the floor}}."""
    model, schedule, _ = load_digit_model(path)
    cfg = resolve(GenerateConfig(per_digit=per_digit, model=str(path), seed=seed), model)
    with tempfile.TemporaryDirectory() as tmp:
        generate(Path(tmp) / "g", model, schedule, cfg, overwrite=True, progress=progress)
        res = evaluate(Path(tmp) / "g", classifiers, data_root)
    run = run_record(path)
    return {"file": str(path), "minutes": None if run["wall_s"] is None else run["wall_s"] / 60, "step": run["step"],
            "acc": {m: d["acc"] for m, d in res["domains"].items()},
            "fd": {m: d["fd_generated_vs_real"] for m, d in res["domains"].items()},
            "fd_real_vs_real": {m: d["fd_real_vs_real"] for m, d in res["domains"].items()}}


def plot_time_to_quality(curves: dict[str, list[dict]], path, title: str | None = None) -> None:
    """One PNG: accuracy (top row) and Fréchet distance (bottom row, log scale) per domain against
    training minutes, one line per run; the dashed line is the real-vs-real Fréchet floor at the same
    sample size (a model cannot be told apart from real data below it)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    # the legend gets a row of its own under the plots: with six or more runs, a legend inside an axes hid
    # the curves it named (about 0.17 inch per entry at font size 7)
    entries = len(curves) + 1
    fig = plt.figure(figsize=(4.2 * len(DOMAINS), 6.4 + 0.17 * entries))
    grid_spec = fig.add_gridspec(3, len(DOMAINS), height_ratios=[3.2, 3.2, 0.17 * entries + 0.1])
    axes = [[fig.add_subplot(grid_spec[row, col]) for col in range(len(DOMAINS))] for row in (0, 1)]
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
    legend = fig.add_subplot(grid_spec[2, :])
    legend.axis("off")
    legend.legend(*axes[1][0].get_legend_handles_labels(), loc="center", fontsize=7, frameon=False)
    save_figure(fig, path, title)
