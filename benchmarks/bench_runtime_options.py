"""Which process-level options make the default generate faster: threads, channels_last, torch.compile.

Times the default path (the student, 1000 images, bf16) end to end through `generate()` under each option,
round-robin over --runs rounds so the VM's drift hits all alike; torch.compile's compilation is timed
separately (first call) and reported, since a user pays it on every run. Adopt only what measures faster.

    .venv/bin/python benchmarks/bench_runtime_options.py [--runs 3] [--model student]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import _malloc

_malloc.ensure()

import torch  # noqa: E402
from _record import write_record  # noqa: E402  (benchmarks/_record.py)

from difflab.digits.generate import GenerateConfig, generate, resolve  # noqa: E402
from difflab.models.digits import load_digit_model  # noqa: E402
from difflab.runtime import finish_machine, machine  # noqa: E402


def variants(model):
    """name -> (model to use, threads, seconds spent preparing it)."""
    out = {"eager, 2 threads": (model, 2, 0.0), "eager, 1 thread": (model, 1, 0.0)}
    cl = load_digit_model("student" if model.config.guidance_input else "teacher")[0]
    out["channels_last, 2 threads"] = (cl.to(memory_format=torch.channels_last), 2, 0.0)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--model", default="student")
    ap.add_argument("--per-digit", type=int, default=50)
    ap.add_argument("--no-compile", action="store_true")
    ap.add_argument("--out", default="benchmarks/results/runtime_options.json")
    args = ap.parse_args()
    info = machine()
    model, schedule, _ = load_digit_model(args.model)
    cfg = resolve(GenerateConfig(model=args.model, per_digit=args.per_digit), model)
    cases = variants(model)
    compile_s = None
    if not args.no_compile:
        torch.set_num_threads(2)
        compiled = load_digit_model(args.model)[0]
        compiled.forward = torch.compile(compiled.forward)  # keeps .config/.student for the sampler choice
        t0 = time.perf_counter()
        with tempfile.TemporaryDirectory() as tmp:  # first run = compilation (+ one generation)
            first = generate(Path(tmp) / "c", compiled, schedule, cfg, progress=False)
        compile_s = time.perf_counter() - t0
        cases["torch.compile (inductor), 2 threads"] = (compiled, 2, compile_s)
        print(f"torch.compile first run (compilation + one generation): {compile_s:.1f} s "
              f"(that generation alone: {first['total_s']:.1f} s)", flush=True)
    times = {name: [] for name in cases}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.runs):
            for name, (m, threads, _) in cases.items():
                torch.set_num_threads(threads)
                t = generate(Path(tmp) / f"{r}", m, schedule, cfg, overwrite=True, progress=False)
                times[name].append(t["total_s"])
                print(f"round {r + 1} {name}: {t['total_s']:.2f} s", flush=True)
    base = statistics.median(times["eager, 2 threads"])
    rows = [{"option": n, "median_s": statistics.median(v), "runs_s": v, "speedup": base / statistics.median(v),
             "prepare_s": cases[n][2]} for n, v in times.items()]
    info = finish_machine(info)
    print(f"\nmachine: {info['cpu']}, {info['cores']} cores; load average {info['load_average_at_start']} at start, "
          f"{info['load_average_at_end']} at end; {args.model}, {20 * args.per_digit} images")
    print(f"{'option':<36} {'median s':>9} {'vs eager 2 thr':>15} {'one-off s':>10}")
    for r in rows:
        print(f"{r['option']:<36} {r['median_s']:>9.2f} {r['speedup']:>14.2f}x {r['prepare_s']:>10.1f}")
    write_record(args.out, {"machine": info, "model": args.model, "rows": rows, "compile_first_run_s": compile_s})


if __name__ == "__main__":
    main()
