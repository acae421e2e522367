"""Benchmark `difflab digits generate` (1000 images) + eval on the shipped model.

Prints one table and writes benchmarks/results/digits.json. Timing: median of --runs full generations
(network vs the rest), under the glibc allocator settings below: with glibc's default malloc the timings
swung up to 2x on these tensor sizes (millions of page faults). They only act when set before the
process starts, so the script re-executes itself with them (the Makefile exports the same values).

    .venv/bin/python benchmarks/bench_digits.py [--model runs/x/ema.safetensors] [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import _malloc  # benchmarks/_malloc.py: re-executes with the glibc allocator settings

_malloc.ensure()

import torch  # noqa: E402

from difflab.digits.evaluate import evaluate  # noqa: E402
from difflab.digits.generate import GenerateConfig, generate  # noqa: E402
from difflab.digits.model_io import DEFAULT_MODEL, load_digit_model  # noqa: E402


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__}, {platform.python_version()}"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--per-digit", type=int, default=50)
    ap.add_argument("--guidance", type=float, default=GenerateConfig.guidance)
    ap.add_argument("--steps", type=int, default=GenerateConfig.steps)
    ap.add_argument("--guide", choices=["digit", "both"], default=GenerateConfig.guide)
    ap.add_argument("--model", default=str(DEFAULT_MODEL), help="digit model (default: the shipped one)")
    ap.add_argument("--out", default="benchmarks/results/digits.json")
    args = ap.parse_args()
    model, schedule, _ = load_digit_model(args.model)
    cfg = GenerateConfig(per_digit=args.per_digit, guidance=args.guidance, steps=args.steps, guide=args.guide)
    load_start = os.getloadavg()
    runs, res = [], None
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.runs):
            t = generate(Path(tmp) / f"run{i}", model, schedule, cfg, overwrite=True, progress=False)
            runs.append(t)
            print(f"run {i + 1}: {t['total_s']:.1f} s (network {t['network_s']:.1f} s)", flush=True)
        t0 = time.perf_counter()
        res = evaluate(Path(tmp) / "run0")
        eval_s = time.perf_counter() - t0
    med = statistics.median(r["total_s"] for r in runs)
    med_run = min(runs, key=lambda r: abs(r["total_s"] - med))
    out = {
        "machine": machine(), "model": args.model, "load_avg_start": load_start, "load_avg_end": os.getloadavg(),
        "malloc": {k: os.environ.get(k) for k in _malloc.MALLOC},
        "config": cfg.__dict__, "runs_s": [r["total_s"] for r in runs], "median_s": med,
        "median_network_s": med_run["network_s"], "median_other_s": med_run["other_s"], "eval_s": eval_s,
        "results": res,
    }
    rows = [("images", f"{med_run['images']}"), ("generate median of runs (s)", f"{med:.1f}"),
            ("  network (s)", f"{med_run['network_s']:.1f}"),
            ("  rest: sampler, PNG, grids (s)", f"{med_run['other_s']:.1f}"),
            ("all runs (s)", ", ".join(f"{r['total_s']:.1f}" for r in runs)), ("eval (s)", f"{eval_s:.1f}")]
    for m, r in res["domains"].items():
        rows += [(f"{m} acc (gen)", f"{r['acc']:.4f} ({r['correct']}/{r['total']})"),
                 (f"{m} acc (real val)", f"{r['real_val_acc']:.4f}"),
                 (f"{m} Fréchet gen-vs-real", f"{r['fd_generated_vs_real']:.3f}"),
                 (f"{m} Fréchet real-vs-real", f"{r['fd_real_vs_real']:.3f}")]
    rows.append(("mean acc", f"{res['mean_acc']:.4f}"))
    w = max(len(k) for k, _ in rows)
    print(f"\nmachine: {out['machine']}; load average {load_start[0]:.2f} at start, "
          f"{out['load_avg_end'][0]:.2f} at end\nmodel: {args.model}\nmalloc: {out['malloc']}")
    print(f"{'metric'.ljust(w)} | value\n{'-' * w}-+------")
    for k, v in rows:
        print(f"{k.ljust(w)} | {v}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2, default=str))
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
