"""What a perfect copier of the 20 training images would score (issue 12's Fréchet target, in context).

bench_personalize scores 200 generated images of a concept against held-out real images of its style, beside
the real-vs-real floor (200 *other* real images of the style). But a concept is learned from 20 images. This
script scores the method that reproduces those 20 images exactly and nothing else: each of them 10 times
(200 images, 20 per digit, as `generate --concept` draws them), with the same classifier, the same held-out
set and the same Fréchet distance. It needs no model and no generation: only the evaluation.

Rows: the benchmark's own 20 training images (make_style(..., 'train', 2, seed 0) / make_symbol(..., 20,
seed 0): what every personalize run of bench_personalize saw) and, for the spread, other draws of 20 from the
train split (seeds 100, 101, ...: disjoint streams from the floor's reference, seed 1). The distance of a
copier measures the missing variety: 20 distinct images span at most 19 of the 128 feature directions.
Also: copiers of more distinct images (--sizes), and the 20 copies each shifted by up to 1-3 whole pixels
(--shifts: `personalize --augment-shift`'s augmentation, applied to the copies themselves).

    .venv/bin/python benchmarks/style_copy_floor.py [--draws 5] [--out benchmarks/results/style_copy_floor.json]

Compare with bench_personalize's generated rows (personalize-digits.md, docs/RESULTS.md §8).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import _malloc  # benchmarks/_malloc.py: re-executes with the glibc allocator settings

_malloc.ensure()

import numpy as np  # noqa: E402
import torch  # noqa: E402
from _record import command_line, write_record  # noqa: E402  (benchmarks/_record.py)

from difflab.concepts.style_eval import SYMBOL_CLASS, eval_classifier, real_sets  # noqa: E402
from difflab.data import to_model_range  # noqa: E402
from difflab.data.augment import random_shift  # noqa: E402
from difflab.data.styles import make_style, make_symbol  # noqa: E402
from difflab.digits.evaluate import score  # noqa: E402
from difflab.runtime import finish_machine, machine  # noqa: E402

TARGETS = {"lcd": "lcd", "blueprint": "blueprint", "A (svhn)": "symbol-svhn"}  # row name -> eval target
N_GENERATED = 200  # bench_personalize's generated images per concept: 20 per digit, or 200 symbols
TRAIN_SEED = 0  # the benchmark's training images (write_style_set / write_symbol_set, seed 0)


def training_draw(target: str, seed: int, n: int = 20) -> tuple[np.ndarray, np.ndarray]:
    """n train-split images of the target as personalize gets them (a style: n // 10 per digit):
    (n, 28, 28, 3) uint8, labels (n,) int64."""
    if target.startswith("symbol-"):
        images = make_symbol(target[len("symbol-"):], "train", n, seed)
        return images, np.full(n, SYMBOL_CLASS, dtype=np.int64)
    return make_style(target, "train", n // 10, seed)


def copier_score(target: str, model, seed: int, n: int = 20, shift: int = 0) -> dict:
    """Score the n images of one draw, each repeated N_GENERATED / n times (each copy moved by up to `shift`
    whole pixels: personalize --augment-shift's augmentation), as generated images."""
    images, labels = training_draw(target, seed, n)
    reps = N_GENERATED // len(images)
    x = random_shift(to_model_range(np.repeat(images, reps, axis=0)), shift, torch.Generator().manual_seed(0))
    y = torch.from_numpy(np.repeat(labels, reps))
    real, _, ref = real_sets(target, len(x))
    s = score(model, x, y, to_model_range(real), to_model_range(ref))
    return {"seed": seed, "n_distinct": n, "shift": shift, "acc": s["acc"],
            "fd_copies_vs_real": s["fd_generated_vs_real"], "fd_real_vs_real": s["fd_real_vs_real"]}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--draws", type=int, default=5, help="other 20-image draws per target, for the spread")
    ap.add_argument("--sizes", type=int, nargs="*", default=[50, 100],
                    help="also copiers of this many distinct training images (divisors of 200: how many "
                         "images a copier needs to come near the floor)")
    ap.add_argument("--shifts", type=int, nargs="*", default=[1, 2, 3],
                    help="also the benchmark's 20 copies, each moved by up to this many pixels")
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent / "results" / "style_copy_floor.json"))
    args = ap.parse_args(argv)
    t0, where = time.perf_counter(), machine()
    rows = []
    for name, target in TARGETS.items():
        model, meta = eval_classifier(target, progress=True)
        own = copier_score(target, model, TRAIN_SEED)
        others = [copier_score(target, model, 100 + i) for i in range(args.draws)]
        fds = [o["fd_copies_vs_real"] for o in others]
        larger = [copier_score(target, model, 100, n) for n in args.sizes]
        shifted = [copier_score(target, model, TRAIN_SEED, shift=px) for px in args.shifts]
        rows.append({"concept": name, "eval_target": target, "classifier_val_acc": meta["val_acc"],
                     "benchmark_draw": own, "other_draws": others, "larger_sets": larger, "shifted_copies": shifted,
                     "other_draws_fd": {"mean": statistics.mean(fds), "min": min(fds), "max": max(fds)}})
    print(f"{'concept':<10} {'real vs real':>12} {'copies of the bench 20':>22} {'/ floor':>7} "
          f"{'other 20s: mean (min-max)':>28}  " + "  ".join(f"{f'copies of {n}':>13}" for n in args.sizes)
          + "  " + "  ".join(f"{f'shift {px}':>8}" for px in args.shifts))
    for r in rows:
        own, o = r["benchmark_draw"], r["other_draws_fd"]
        floor = own["fd_real_vs_real"]
        print(f"{r['concept']:<10} {floor:>12.3f} {own['fd_copies_vs_real']:>22.3f} "
              f"{own['fd_copies_vs_real'] / floor:>6.1f}x {o['mean']:>12.3f} ({o['min']:.3f}-{o['max']:.3f})  "
              + "  ".join(f"{x['fd_copies_vs_real']:>13.3f}" for x in r["larger_sets"])
              + "  " + "  ".join(f"{x['fd_copies_vs_real']:>8.3f}" for x in r["shifted_copies"]))
    out = {"command": command_line(), "machine": finish_machine(where),
           "n_generated": N_GENERATED, "rows": rows, "wall_s": time.perf_counter() - t0}
    write_record(args.out, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
