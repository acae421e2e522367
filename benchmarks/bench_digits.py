"""Benchmark `difflab digits generate` (1000 images) for the teacher path and each few-step candidate.

One run times every candidate (model x sampler x steps x guidance mode) on the same 1000 images (same
seed, same layout), evaluates each with the shipped classifiers (accuracy and Fréchet distance per
domain), and prints the speed-up against the teacher path measured in this same run: machines differ
(up to 1.6x between two 2-core VMs), ratios inside one run do not. With --runs N the candidates run
round-robin N times (so drift of the VM's speed hits all alike) and the median counts.

Timing is under the glibc allocator settings; `difflab` applies them itself (difflab.runtime), and this
script re-executes with the same values as environment variables so imports happen under them too.

    .venv/bin/python benchmarks/bench_digits.py [--runs 3] [--only student,teacher-ddim20]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import _malloc  # benchmarks/_malloc.py: re-executes with the glibc allocator settings

_malloc.ensure()

from _record import write_record  # noqa: E402  (benchmarks/_record.py)

from difflab.digits.evaluate import evaluate  # noqa: E402
from difflab.digits.generate import GenerateConfig, RowCounter, generate, resolve  # noqa: E402
from difflab.models.digits import load_digit_model  # noqa: E402
from difflab.runtime import finish_machine, machine  # noqa: E402

INTERVAL = (81, 578)  # sigma in (0.28, 5.42], Kynkäänniemi et al. 2024's interval, mapped to our schedule
CANDIDATES = {  # name -> GenerateConfig overrides; the first is the baseline (today's old default)
    "teacher-ddim20": dict(model="teacher", sampler="ddim", steps=20),
    "teacher-ddim20-interval": dict(model="teacher", sampler="ddim", steps=20, guidance_interval=INTERVAL),
    "teacher-dpmpp2m-10": dict(model="teacher", sampler="dpmpp-2m", steps=10),
    "teacher-unipc-10": dict(model="teacher", sampler="unipc", steps=10),
    "teacher-dpmpp2m-10-interval": dict(model="teacher", sampler="dpmpp-2m", steps=10, guidance_interval=INTERVAL),
    "teacher-dpmpp2m-6": dict(model="teacher", sampler="dpmpp-2m", steps=6),
    "student": dict(model="student"),  # the student at the common guidance
    "student-w4": dict(model="student", guidance=4.0),
}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--per-digit", type=int, default=50)
    ap.add_argument("--guidance", type=float, default=GenerateConfig.guidance)
    ap.add_argument("--only", default=None, help="comma-separated candidate names (default: all)")
    ap.add_argument("--out", default="benchmarks/results/digits.json")
    args = ap.parse_args()
    names = list(CANDIDATES) if args.only is None else args.only.split(",")
    if names[0] != "teacher-ddim20":
        names.insert(0, "teacher-ddim20")  # the baseline is always measured in the same run
    models = {m: load_digit_model(m)[:2] for m in ("teacher", "student")}
    info = machine()  # its load average at start: above the core count = other work competed
    times: dict[str, list[dict]] = {n: [] for n in names}
    results, passes = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.runs):
            for n in names:
                cfg = GenerateConfig(**{"per_digit": args.per_digit, "guidance": args.guidance, **CANDIDATES[n]})
                model, schedule = models[cfg.model]
                counter = RowCounter(model)
                cfg = resolve(cfg, model)
                t = generate(Path(tmp) / f"{n}-{r}", counter, schedule, cfg, overwrite=True, progress=False)
                times[n].append(t)
                passes[n] = counter.rows / t["images"]
                print(f"run {r + 1} {n}: {t['total_s']:.1f} s (network {t['network_s']:.1f} s), "
                      f"{passes[n]:.0f} network evaluations per image", flush=True)
        for n in names:
            t0 = time.perf_counter()
            results[n] = evaluate(Path(tmp) / f"{n}-0")
            results[n]["eval_s"] = time.perf_counter() - t0
    med = {n: statistics.median(t["total_s"] for t in times[n]) for n in names}
    base = "teacher-ddim20"
    rows = []
    for n in names:
        d = results[n]["domains"]
        net = statistics.median(t["network_s"] for t in times[n])
        rows.append({
            "name": n, "config": CANDIDATES[n], "evals_per_image": passes[n], "median_s": med[n], "network_s": net,
            "runs_s": [t["total_s"] for t in times[n]], "speedup": med[base] / med[n],
            "acc": {m: d[m]["acc"] for m in d}, "fd": {m: d[m]["fd_generated_vs_real"] for m in d},
            "fd_vs_teacher": {m: d[m]["fd_generated_vs_real"] / results[base]["domains"][m]["fd_generated_vs_real"]
                              for m in d},
            "fd_real_vs_real": {m: d[m]["fd_real_vs_real"] for m in d},
        })
    out = {"machine": finish_machine(info),
           "malloc": {k: os.environ.get(k) for k in _malloc.MALLOC}, "per_digit": args.per_digit,
           "guidance": args.guidance, "runs": args.runs, "baseline": base, "candidates": rows}
    _print_table(info, args, rows)
    write_record(args.out, out)


def _print_table(info: dict, args, rows: list[dict]) -> None:
    print(f"\nmachine: {info['cpu']}, {info['cores']} cores; load average {info['load_average_at_start']} at "
          f"start, {info['load_average_at_end']} at end; {20 * args.per_digit} images, guidance {args.guidance:g}")
    head = (f"{'candidate':<28} {'NFE/img':>7} {'time s':>7} {'speed-up':>8} {'acc MNIST-M':>11} {'acc SVHN':>8} "
            f"{'FD MNIST-M':>10} {'FD SVHN':>8} {'FD/teacher':>11}")
    print(head + "\n" + "-" * len(head))
    for r in rows:
        print(f"{r['name']:<28} {r['evals_per_image']:>7.0f} {r['median_s']:>7.1f} {r['speedup']:>7.1f}x "
              f"{r['acc']['mnistm']:>11.4f} {r['acc']['svhn']:>8.4f} {r['fd']['mnistm']:>10.3f} "
              f"{r['fd']['svhn']:>8.3f} "
              f"{r['fd_vs_teacher']['mnistm']:>5.2f}/{r['fd_vs_teacher']['svhn']:.2f}")
    rr = rows[0]["fd_real_vs_real"]
    print(f"Fréchet real vs real (noise level at this sample size): MNIST-M {rr['mnistm']:.3f}, SVHN {rr['svhn']:.3f}")


if __name__ == "__main__":
    main()
