"""Benchmark `difflab digits generate` (1000 images) + eval on the shipped model.

Prints one table and writes benchmarks/results/digits.json. Timing: median of --runs full generations
(network vs the rest), under the allocator settings below (set them in the environment before Python
starts; the Makefile does): glibc's default malloc made timings swing up to 2x on these tensor sizes.

    MALLOC_MMAP_THRESHOLD_=33554432 MALLOC_TRIM_THRESHOLD_=4294967296 MALLOC_TOP_PAD_=1073741824 \
        .venv/bin/python benchmarks/bench_digits.py
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

import torch

from difflab.digits.evaluate import evaluate
from difflab.digits.generate import GenerateConfig, generate
from difflab.digits.model_io import load_digit_model

MALLOC_VARS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_")


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
    ap.add_argument("--out", default="benchmarks/results/digits.json")
    args = ap.parse_args()
    model, schedule, _ = load_digit_model()
    cfg = GenerateConfig(per_digit=args.per_digit, guidance=args.guidance, steps=args.steps)
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
        "machine": machine(), "malloc": {k: os.environ.get(k) for k in MALLOC_VARS},
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
    print(f"\nmachine: {out['machine']}\nmalloc: {out['malloc']}")
    print(f"{'metric'.ljust(w)} | value\n{'-' * w}-+------")
    for k, v in rows:
        print(f"{k.ljust(w)} | {v}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2, default=str))
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
