"""Report section: how the report's digit model was trained, and its time-to-quality curve.

The record is what the weights carry (`difflab digits info`). The curve needs the run's EMA snapshots
(`digits train --snapshot-minutes M`): when the model file sits in a run folder with OUT/snapshots/, the
report judges every snapshot itself by the one fixed evaluation (difflab.digits.quality.quality_point,
`--per-digit` images per digit and domain); otherwise, when the folder holds the release gate's
gate.json (scripts/release_gate.py), it draws the curve recorded there and says so; otherwise it says how
to get one.
"""

from __future__ import annotations

import json

from difflab.data import DOMAINS
from difflab.digits.evaluate import PRETTY
from difflab.digits.info import checkpoint_info
from difflab.digits.quality import plot_time_to_quality, quality_point
from difflab.models.digits import model_path
from difflab.report.context import Context
from difflab.report.html import figure, paragraph, table
from difflab.training.config import snapshot_files


def record_rows(train: dict) -> list[list[str]]:
    """The `digits info` train section as table rows (older files lack some keys: shown as unknown)."""
    cfg = train.get("config") or {}
    wall = train.get("wall_s")
    budget = cfg.get("time_budget")
    return [["optimisation steps", str(train.get("steps", "unknown"))],
            ["training minutes (all legs)", f"{wall / 60:.1f}" if wall is not None else "unknown"],
            ["legs (1 = one uninterrupted curve)", str(train.get("legs", "unknown"))],
            ["machine, date", f"{train.get('machine', 'unknown')}, {train.get('date', 'unknown')}"],
            ["loss", cfg.get("loss_weighting", "eps") + (f" (gamma {cfg.get('min_snr_gamma'):g})"
                                                           if "min-snr" in cfg.get("loss_weighting", "eps") else "")],
            ["batch, peak lr, EMA decay", f"{cfg.get('batch_size')}, {cfg.get('lr')}, {cfg.get('ema_decay')}"],
            ["time budget", f"{budget:g} min" if budget else "none (--steps)"],
            ["data", str(train.get("data", "unknown"))]]


def run_curve(ctx: Context) -> tuple[list[dict], str]:
    """(curve points, where they come from); ([], how to get one) when the model has no snapshots."""
    path = model_path(ctx.model_path)
    snaps = [p for _, p in snapshot_files(path.parent)]
    if snaps:
        return ([quality_point(p, ctx.cfg.per_digit, ctx.cfg.seed, ctx.classifiers, ctx.data_root) for p in snaps],
                f"judged in this report: {len(snaps)} snapshots in {path.parent / 'snapshots'}")
    gate = path.parent / "gate.json"
    if gate.is_file():
        return json.loads(gate.read_text())["curve"], f"recorded by scripts/release_gate.py in {gate}"
    return [], ("This model's folder has no training snapshots, so there is no time-to-quality curve to draw. "
                "Train with `difflab digits train --snapshot-minutes M` (scripts/train_release.sh does, every 10 "
                "minutes) and give that run's ema.safetensors to `difflab report --model`; docs/RESULTS.md §1 "
                "has the recipe search's curves.")


def training(ctx: Context) -> str:
    train = checkpoint_info(ctx.model_path or "teacher")["train"]
    parts = [table(["training record", ""], record_rows(train),
                   "What the weights file records about its own training (`difflab digits info`).")]
    curve, source = run_curve(ctx)
    ctx.numbers["training"] = {"record": {k: v for k, v in train.items() if k != "config"}, "curve": curve,
                               "curve_source": source if curve else None}
    if not curve:
        return "".join(parts) + paragraph(source, "note")
    plot_time_to_quality({"this run": curve}, ctx.stage / "training" / "time_to_quality.png")
    floor = ", ".join(f"{PRETTY[m]} {curve[-1]['fd_real_vs_real'][m]:.3f}" for m in DOMAINS)
    parts.append(figure("training/time_to_quality.png", "accuracy and Fréchet distance against training minutes",
                        f"Each point is the run's EMA weights after that many minutes of training, judged the same "
                        f"way: `digits generate` defaults, own-classifier accuracy (top) and Fréchet distance to "
                        f"real images (bottom, log scale; dashed: real vs real at the same sample size: {floor}). "
                        f"Curve {source}.", ctx.report_command))
    head = ["minutes", "step", *(f"{PRETTY[m]} acc." for m in DOMAINS), *(f"{PRETTY[m]} Fréchet" for m in DOMAINS)]
    parts.append(table(head, [[f"{p['minutes']:.1f}", str(p["step"]), *(f"{p['acc'][m]:.3f}" for m in DOMAINS),
                               *(f"{p['fd'][m]:.3f}" for m in DOMAINS)] for p in curve]))
    return "".join(parts)

