"""Seed-to-seed spread of the digit quality numbers: one model at several guidance scales and generate seeds.

bench_digits.py judges every candidate on the same 1000 images (seed 0). At the accuracy the shipped models
reach (5-10 mistakes per 1000), one seed cannot tell a 0.995 gate from luck (docs/RESULTS.md §7). This
runs `digits generate OUT --model M --guidance W --seed S` (1000 images: 50 per digit and domain) and
`digits eval` for every W and S, and prints per-setting accuracy and Fréchet per domain, their mean over
the seeds, and at how many seeds both domains reach the accuracy gate.

    .venv/bin/python benchmarks/seed_spread.py --model student --guidance 3 3.5 4 --seeds 0 1 2 3 4 \
        --out benchmarks/results/seed_spread_student.json
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import _malloc  # benchmarks/_malloc.py: re-executes with the glibc allocator settings

_malloc.ensure()

from _quality import generate_and_score, mean_over_seeds  # noqa: E402  (benchmarks/_quality.py)
from _record import command_line, write_record  # noqa: E402  (benchmarks/_record.py)

from difflab.data import DOMAINS  # noqa: E402
from difflab.digits.generate import GenerateConfig  # noqa: E402
from difflab.models.digits import load_digit_model  # noqa: E402
from difflab.runtime import finish_machine, machine  # noqa: E402

GATE = 0.995  # issue 10's and 11's accuracy gate per domain


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="student", help="teacher, student or a .safetensors path")
    ap.add_argument("--guidance", type=float, nargs="+", default=[3.0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--sampler", default=None, help="generate's --sampler (default: the model's own)")
    ap.add_argument("--steps", type=int, default=None, help="generate's --steps (default: the model's own)")
    ap.add_argument("--eta", type=float, default=0.0, help="generate's --eta (DDIM; default 0: deterministic)")
    ap.add_argument("--per-digit", type=int, default=50)
    ap.add_argument("--work", default="/tmp/seed_spread", help="generated images (replaced per setting)")
    ap.add_argument("--out", required=True, help="results JSON")
    args = ap.parse_args(argv)
    where, t0 = machine(), time.perf_counter()
    model, schedule, _ = load_digit_model(args.model)
    results: dict[str, dict] = {}
    for w in args.guidance:
        per_seed = {}
        for seed in args.seeds:
            cfg = GenerateConfig(per_digit=args.per_digit, model=args.model, guidance=w, seed=seed,
                                 sampler=args.sampler, steps=args.steps, eta=args.eta)
            row, timing = generate_and_score(Path(args.work) / f"w{w:g}_s{seed}", model, schedule, cfg)
            per_seed[str(seed)] = {**row, "generate_s": timing["total_s"]}
            print(f"w {w:g} seed {seed}: "
                  + "  ".join(f"{m} {row[m]['acc']:.3f} / {row[m]['fd']:.3f}" for m in DOMAINS), flush=True)
        mean = mean_over_seeds(per_seed)
        passing = sum(all(s[m]["acc"] >= GATE for m in DOMAINS) for s in per_seed.values())
        results[f"{w:g}"] = {"per_seed": per_seed, "mean": mean, "seeds_passing_gate": passing}
    print(f"\n{args.model}, {len(args.seeds)} seeds of {args.per_digit * 20} images: mean accuracy / Fréchet, "
          f"seeds with both domains >= {GATE}")
    for w, r in results.items():
        print(f"  w {w:>4}: " + "  ".join(f"{m} {r['mean'][m]['acc']:.4f} / {r['mean'][m]['fd']:.3f}" for m in DOMAINS)
              + f"   {r['seeds_passing_gate']}/{len(args.seeds)} seeds pass")
    record = {"command": command_line(), "model": args.model, "seeds": args.seeds,
              "per_digit": args.per_digit, "sampler": args.sampler, "steps": args.steps, "eta": args.eta, "gate": GATE,
              "results": results, "machine": finish_machine(where), "wall_s": time.perf_counter() - t0}
    write_record(args.out, record)
    return 0


if __name__ == "__main__":
    sys.exit(main())
