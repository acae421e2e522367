"""Recipe search for the digit teacher at equal training budgets (issue 11): one fixed evaluation per run.

Every row trains from scratch with `difflab digits train --time-budget B --snapshot-minutes S` (the step
count and its cosine fitted to B minutes of this machine), alone on the machine, one row at a time; then
every snapshot and the final EMA weights are judged the same way: `digits generate` at its defaults
(DDIM 20 steps, guidance 3, seed 0), 20 images per digit and domain (200 per domain), own-classifier
accuracy and Fréchet distance per domain (`digits eval`). The time-to-quality points (minutes, accuracy,
Fréchet) of every row go to the JSON and the plot.

Resumable: a row whose run finished is not trained again (delete its folder to redo it), an evaluated
file (same size and mtime) is not evaluated again; an unfinished row is trained again from scratch.

    nohup .venv/bin/python benchmarks/bench_train_recipes.py --budget 10 > runs/recipes.log 2>&1 &
    .venv/bin/python benchmarks/bench_train_recipes.py --eval-only      # table + plot from what exists
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import _malloc  # benchmarks/_malloc.py: re-executes with the glibc allocator settings

_malloc.ensure()

from _record import write_record  # noqa: E402  (benchmarks/_record.py)

from difflab.digits.info import checkpoint_info  # noqa: E402
from difflab.digits.quality import plot_time_to_quality, quality_point, run_record  # noqa: E402
from difflab.models.digits import model_path  # noqa: E402
from difflab.models.unet import UNetConfig  # noqa: E402
from difflab.runtime import finish_machine, machine  # noqa: E402
from difflab.training.config import snapshot_files  # noqa: E402


def release_flags(batch: str, lr: str = "1e-3", *more: str) -> list[str]:
    """The release recipe's `digits train` flags (Min-SNR-5) at this batch size and learning rate, then `more`."""
    return ["--loss-weighting", "min-snr", "--batch-size", batch, "--lr", lr, *more]


# name -> (what changes against the baseline, `digits train` flags); the first row is today's recipe
ROWS = {
    "baseline": ("today's recipe: eps MSE, lr 5e-4, batch 128, 2 res blocks, EMA 0.999", []),
    "min-snr": ("Min-SNR-5 loss weighting", ["--loss-weighting", "min-snr"]),
    "min-snr-lr1e-3": ("Min-SNR-5, lr 1e-3", ["--loss-weighting", "min-snr", "--lr", "1e-3"]),
    "min-snr-1block": ("Min-SNR-5, 1 res block per level (cheaper steps, more of them)",
                       ["--loss-weighting", "min-snr", "--num-res-blocks", "1"]),
    "min-snr-batch64": ("Min-SNR-5, batch 64 (twice the steps)", ["--loss-weighting", "min-snr", "--batch-size", "64"]),
    # the release recipe (scripts/train_release.sh) and ways to more updates per minute from it
    "release": ("Min-SNR-5, batch 64, lr 1e-3 (the one-hour release recipe)", release_flags("64")),
    "release-batch32": ("release recipe at batch 32 (twice its steps)", release_flags("32")),
    "release-1block": ("release recipe, 1 res block per level (cheaper steps)",
                       release_flags("64", "1e-3", "--num-res-blocks", "1")),
    "release-1block-batch32": ("release recipe, 1 res block per level, batch 32 (the two winners together)",
                               release_flags("32", "1e-3", "--num-res-blocks", "1")),
    "release-1block-batch32-lr2e-3": ("the row above at lr 2e-3", release_flags("32", "2e-3", "--num-res-blocks", "1")),
    "release-1block-mults122": ("release recipe, 1 res block, channels 32-64-64 (1.35x cheaper steps, 1.14M "
                                "parameters instead of 2.66M)",
                                release_flags("64", "1e-3", "--num-res-blocks", "1", "--channel-mults", "1", "2", "2")),
    "release-1block-base24": ("release recipe, 1 res block, channels 24-48-96 (as cheap as the row above, "
                              "1.50M parameters)", release_flags("64", "1e-3", "--num-res-blocks", "1",
                                                                 "--base-channels", "24")),
    # the search axes the rows above left out (issue 11 item 1): the noise schedule
    "release-1block-mults122-cosine": ("the 32-64-64 row with the cosine noise schedule (Nichol & Dhariwal "
                                       "2021) instead of the linear one",
                                       release_flags("64", "1e-3", "--num-res-blocks", "1", "--channel-mults", "1",
                                                     "2", "2", "--schedule", "cosine")),
    # and the prediction target (what the network's last layer learns; the model still returns eps)
    "release-1block-mults122-v": ("the 32-64-64 row with v-prediction (Salimans & Ho 2022) instead of eps",
                                  release_flags("64", "1e-3", "--num-res-blocks", "1", "--channel-mults", "1", "2",
                                                "2", "--prediction", "v")),
}


def train_row(root: Path, name: str, flags: list[str], budget: float, snapshot: float) -> None:
    out = root / name
    if (out / "ema.safetensors").exists() and (run_record(out / "ema.safetensors")["wall_s"] or 0) >= budget * 60 - 5:
        print(f"{name}: trained already ({out})", flush=True)
        return
    cmd = [sys.executable, "-m", "difflab.cli", "digits", "train", "--out-dir", str(out), "--seed", "0",
           "--time-budget", f"{budget:g}", "--snapshot-minutes", f"{snapshot:g}", "--overwrite", *flags]
    print("$ " + " ".join(cmd[2:]), flush=True)
    subprocess.run(cmd, check=True)


def score_file(path: Path, per_digit: int, cache: dict) -> dict:
    """The fixed evaluation of one weights file (cached by size and mtime)."""
    key = f"{path}:{path.stat().st_size}:{path.stat().st_mtime_ns}"
    if key not in cache:
        cache[key] = quality_point(path, per_digit)
        print(f"  {path}: {cache[key]['minutes']:.1f} min, step {cache[key]['step']}, acc {cache[key]['acc']}, "
              f"FD {cache[key]['fd']}", flush=True)
    return cache[key]


def evaluate_row(root: Path, name: str, per_digit: int, cache: dict) -> dict | None:
    out = root / name
    if not (out / "ema.safetensors").exists():
        return None
    run = run_record(out / "ema.safetensors")
    # a snapshot within half a minute of the end is the final weights' twin
    snaps = [p for minutes, p in snapshot_files(out) if minutes < run["wall_s"] / 60 - 0.5]
    curve = [score_file(p, per_digit, cache) for p in [*snaps, out / "ema.safetensors"]]
    return {"name": name, "what": ROWS[name][0], "flags": ROWS[name][1], "steps": run["step"],
            "wall_s": run["wall_s"], "s_per_step": run["wall_s"] / max(1, run["step"]),
            "final": curve[-1], "curve": curve}


def recipe_label(path: Path) -> str:
    """'batch 64, lr 1e-3, 1 res block, min-snr' from a run's recorded training config, with ', channels
    32-64-64' when the widths are not the default 32-64-128, the schedule and the prediction target when they
    are not linear and eps, and ', seed 1' when the seed is not 0."""
    info = checkpoint_info(path)
    cfg = info["train"]["config"] or {}
    unet = UNetConfig.from_dict(info["unet"])
    blocks = unet.num_res_blocks
    widths = [unet.base_channels * m for m in unet.channel_mults]
    default = UNetConfig()
    channels = f", channels {'-'.join(map(str, widths))}" if widths != [default.base_channels * m for m in
                                                                      default.channel_mults] else ""
    seed = f", seed {cfg['seed']}" if cfg.get("seed") else ""
    schedule = f", {cfg['schedule']} schedule" if cfg.get("schedule", "linear") != "linear" else ""
    target = f", {unet.prediction}-prediction" if unet.prediction != default.prediction else ""
    return (f"batch {cfg.get('batch_size')}, lr {cfg.get('lr', 0):g}, {blocks} res block{'s' * (blocks != 1)}"
            f"{channels}{schedule}{target}, {cfg.get('loss_weighting', 'eps')}{seed}")


def old_vs_new(releases: list[Path], rows: list[dict], per_digit: int, cache: dict) -> dict[str, list[dict]]:
    """Curves of the old recipe (its 10-minute row, then the shipped teacher: 9000 steps in three legs) and
    of each release run (its snapshots and final weights; the gate's own points when gate.json has them:
    the same function with the same arguments)."""
    baseline = next(r for r in rows if r["name"] == "baseline")
    shipped = score_file(model_path("teacher"), per_digit, cache)
    curves = {"old recipe (10-min row, then the shipped teacher)": [*baseline["curve"], shipped]}
    for release in releases:
        gate = release / "gate.json"
        recorded = json.loads(gate.read_text()) if gate.is_file() else {}
        if recorded.get("curve_per_digit", 20) == per_digit:  # 20: release_gate.py's default, before it said so
            curve = recorded["curve"]
        else:
            curve = [score_file(p, per_digit, cache) for p in [*(p for _, p in snapshot_files(release)),
                                                              release / "ema.safetensors"]]
        curves[f"{release}: {recipe_label(release / 'ema.safetensors')}"] = curve
    return curves


def print_table(rows: list[dict], budget: float, per_digit: int) -> None:
    head = (f"{'recipe':<18} {'steps':>6} {'s/step':>6} {'acc MNIST-M':>11} {'acc SVHN':>8} {'FD MNIST-M':>10} "
            f"{'FD SVHN':>8}  flags")
    print(f"\n{budget:g}-minute runs, fixed evaluation (DDIM 20, guidance 3, {10 * per_digit} images per "
          f"domain)\n{head}\n" + "-" * len(head))
    for r in rows:
        f = r["final"]
        print(f"{r['name']:<18} {r['steps']:>6} {r['s_per_step']:>6.2f} {f['acc']['mnistm']:>11.3f} "
              f"{f['acc']['svhn']:>8.3f} {f['fd']['mnistm']:>10.3f} {f['fd']['svhn']:>8.3f}  {' '.join(r['flags'])}")
    rr = rows[0]["final"]["fd_real_vs_real"]
    print(f"Fréchet real vs real at this sample size: MNIST-M {rr['mnistm']:.3f}, SVHN {rr['svhn']:.3f}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--budget", type=float, default=10.0, help="training minutes per row")
    ap.add_argument("--snapshot", type=float, default=5.0, help="minutes between snapshots")
    ap.add_argument("--per-digit", type=int, default=20)
    ap.add_argument("--only", default=None, help="comma-separated row names (default: all)")
    ap.add_argument("--root", default="runs/recipes")
    ap.add_argument("--eval-only", action="store_true", help="train nothing; evaluate what exists")
    ap.add_argument("--out", default="benchmarks/results/train_recipes.json")
    ap.add_argument("--plot", default="docs/results/train_time_to_quality.png")
    ap.add_argument("--release", action="append", default=[], help="a scripts/train_release.sh run folder "
                    "(repeatable): also plot the old recipe (baseline row + the shipped teacher) against its curve")
    ap.add_argument("--release-plot", default="docs/results/train_old_vs_new.png")
    args = ap.parse_args()
    names = list(ROWS) if args.only is None else args.only.split(",")
    root, out = Path(args.root), Path(args.out)
    old = json.loads(out.read_text()) if out.exists() else {}
    cache = old.get("cache", {})
    info = machine()
    for name in names:
        if not args.eval_only:
            train_row(root, name, ROWS[name][1], args.budget, args.snapshot)
        evaluate_row(root, name, args.per_digit, cache)  # right away: a crash later keeps these scores
        write_record(out, {**old, "cache": cache}, say=False)
    rows = [r for r in (evaluate_row(root, n, args.per_digit, cache) for n in ROWS) if r is not None]
    print_table(rows, args.budget, args.per_digit)
    result = {"machine": finish_machine(info), "budget_min": args.budget, "snapshot_min": args.snapshot,
              "per_digit": args.per_digit, "evaluation": "digits generate defaults (DDIM 20, guidance 3, seed 0) + "
              "digits eval", "rows": rows, "cache": cache}
    write_record(out, result, say=False)
    plot_time_to_quality({r["name"]: r["curve"] for r in rows}, args.plot)
    print(f"\nwrote {out} and {args.plot}")
    if args.release:
        result["old_vs_new"] = old_vs_new([Path(r) for r in args.release], rows, args.per_digit, cache)
        write_record(out, result, say=False)
        plot_time_to_quality(result["old_vs_new"], args.release_plot,
                             f"old recipe vs the release runs ({10 * args.per_digit} images per domain per point)")
        print(f"wrote {args.release_plot}")


if __name__ == "__main__":
    main()
