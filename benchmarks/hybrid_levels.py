"""Where in the noise levels one digit model falls behind another: sample with model A at the noisy steps
and model B at the clean ones, and score the images.

Two models trained on the same data and schedule differ in quality (accuracy, Fréchet distance); this asks
*at which timesteps* the difference arises. Every reverse step t >= SPLIT runs model A, every step t < SPLIT
runs model B, both through the same CFG DDIM that `digits generate` uses (same noise, same seed): if
"teacher above, other below" scores like the teacher, the other model's deficit sits at the noisy levels
(the layout, colours and digit shape are decided there); if it scores like the other model, its deficit
is at the clean levels (texture and detail). The two models must share the noise schedule.

    .venv/bin/python benchmarks/hybrid_levels.py --a teacher --b runs/release7/ema.safetensors --split 500 \
        --seeds 0 1 --out benchmarks/results/hybrid_levels.json
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import _malloc  # benchmarks/_malloc.py: re-executes with the glibc allocator settings

_malloc.ensure()

import torch  # noqa: E402
from _quality import generate_and_score, mean_over_seeds  # noqa: E402  (benchmarks/_quality.py)
from _record import command_line, write_record  # noqa: E402  (benchmarks/_record.py)

from difflab.data import DOMAINS  # noqa: E402
from difflab.digits.generate import GenerateConfig  # noqa: E402
from difflab.models.digits import load_digit_model  # noqa: E402
from difflab.runtime import finish_machine, machine  # noqa: E402


class SplitModel(torch.nn.Module):
    """`noisy` for timesteps >= split, `clean` below; forward(x (B, 3, 28, 28), t (B,) long, digits,
    domains) -> eps (B, 3, 28, 28). A DDIM step sends one timestep for the whole batch, so t[0] decides."""

    def __init__(self, noisy: torch.nn.Module, clean: torch.nn.Module, split: int):
        super().__init__()
        self.noisy, self.clean, self.split = noisy, clean, split

    def forward(self, x, t, *labels):
        return (self.noisy if int(t[0]) >= self.split else self.clean)(x, t, *labels)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--a", default="teacher", help="model for the noisy steps (t >= split)")
    ap.add_argument("--b", required=True, help="model for the clean steps (t < split)")
    ap.add_argument("--split", type=int, nargs="+", default=[500], help="timestep(s) where B takes over")
    ap.add_argument("--both-ways", action="store_true", help="also run B above and A below each split")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--guidance", type=float, default=3.0)
    ap.add_argument("--per-digit", type=int, default=50)
    ap.add_argument("--work", default="/tmp/hybrid_levels")
    ap.add_argument("--out", required=True, help="results JSON")
    args = ap.parse_args(argv)
    where, t0 = machine(), time.perf_counter()
    (a, sched_a, _), (b, sched_b, _) = load_digit_model(args.a), load_digit_model(args.b)
    if not torch.equal(sched_a.alphas_cumprod, sched_b.alphas_cumprod):
        sys.exit(f"{args.a} and {args.b} use different noise schedules: a hybrid would mix two processes")
    pairs = [(args.a, args.b, a, b)] + ([(args.b, args.a, b, a)] if args.both_ways else [])
    results = {}
    for split in args.split:
        for name_hi, name_lo, hi, lo in pairs:
            key = f"{name_hi} for t >= {split}, {name_lo} below"
            per_seed = {}
            for seed in args.seeds:
                cfg = GenerateConfig(per_digit=args.per_digit, model="teacher", guidance=args.guidance, seed=seed,
                                     sampler="ddim", steps=20)
                per_seed[str(seed)], _ = generate_and_score(Path(args.work) / f"s{seed}", SplitModel(hi, lo, split),
                                                            sched_a, cfg)
                print(f"{key}, seed {seed}: " + "  ".join(
                    f"{m} {per_seed[str(seed)][m]['acc']:.3f} / {per_seed[str(seed)][m]['fd']:.3f}"
                    for m in DOMAINS), flush=True)
            results[key] = {"split": split, "noisy": name_hi, "clean": name_lo, "per_seed": per_seed,
                            "mean": mean_over_seeds(per_seed)}
    print(f"\nmean over seeds {args.seeds} (accuracy / Fréchet, {args.per_digit * 10} images per domain):")
    for key, r in results.items():
        print(f"  {key:<70} " + "  ".join(f"{m} {r['mean'][m]['acc']:.4f} / {r['mean'][m]['fd']:.3f}"
                                            for m in DOMAINS))
    write_record(args.out, {"command": command_line(), "a": args.a, "b": args.b, "guidance": args.guidance,
                            "seeds": args.seeds, "per_digit": args.per_digit, "results": results,
                            "machine": finish_machine(where), "wall_s": time.perf_counter() - t0})
    return 0


if __name__ == "__main__":
    sys.exit(main())
