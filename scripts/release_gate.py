"""Decide whether a newly trained digit teacher replaces the shipped one (issue 11's rule), and record
its time-to-quality curve.

The candidate and the shipped teacher are judged in the same run by the one fixed evaluation
(difflab.digits.quality.quality_point: `digits generate` at its defaults, seed 0, then `digits eval`):
the candidate passes when its own-classifier accuracy is >= 0.995 in both domains and its Fréchet
distance is no worse than the shipped teacher's in each domain. Every snapshot of the run
(RUN/snapshots/, from --snapshot-minutes) is judged too (fewer images), for the curve, and every extra EMA
(RUN/emas/, from --extra-ema-decays) with the candidate's images: recorded with its own verdict for the
recipe search, never shipped by this script (the recipe names its --ema-decay before the run).

    .venv/bin/python scripts/release_gate.py runs/release [--per-digit 50] [--curve-per-digit 20]

Writes RUN/gate.json (both models' numbers, the curve, the verdict) and RUN/time_to_quality.png;
exit 0 when the candidate passes, 1 when it does not.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from difflab.digits.quality import plot_time_to_quality, quality_point
from difflab.io import atomic_path
from difflab.runtime import finish_machine, machine
from difflab.training.config import extra_ema_files, snapshot_files

TARGET_ACC = 0.995


def verdict(new: dict, old: dict) -> list[str]:
    """The reasons the candidate fails the rule (empty: it passes)."""
    fails = [f"{m} accuracy {a:.3f} < {TARGET_ACC}" for m, a in new["acc"].items() if a < TARGET_ACC]
    fails += [f"{m} Fréchet {f:.3f} > the shipped teacher's {old['fd'][m]:.3f}"
              for m, f in new["fd"].items() if f > old["fd"][m]]
    return fails


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("run", help="the run folder (its ema.safetensors is the candidate)")
    ap.add_argument("--per-digit", type=int, default=50, help="images per digit and domain for the verdict")
    ap.add_argument("--curve-per-digit", type=int, default=20, help="the same for each snapshot")
    args = ap.parse_args()
    run = Path(args.run)
    info = machine()
    new = quality_point(run / "ema.safetensors", args.per_digit, progress=True)
    old = quality_point("teacher", args.per_digit, progress=True)
    curve = [quality_point(p, args.curve_per_digit) for _, p in snapshot_files(run)]
    if not curve or curve[-1]["minutes"] < new["minutes"] - 0.5:  # the run ended between two snapshots
        curve.append(quality_point(run / "ema.safetensors", args.curve_per_digit))
    extras = [quality_point(p, args.per_digit, progress=True) for p in extra_ema_files(run)]
    fails = verdict(new, old)
    for name, p in (("candidate", new), ("shipped teacher", old), *(("extra EMA", p) for p in extras)):
        print(f"{name:<16} acc MNIST-M {p['acc']['mnistm']:.3f} SVHN {p['acc']['svhn']:.3f}  "
              f"Fréchet MNIST-M {p['fd']['mnistm']:.3f} SVHN {p['fd']['svhn']:.3f}  ({p['file']})")
    for p in curve:
        print(f"  {p['minutes']:6.1f} min, step {p['step']:>5}: acc {p['acc']['mnistm']:.3f} / {p['acc']['svhn']:.3f}"
              f", Fréchet {p['fd']['mnistm']:.3f} / {p['fd']['svhn']:.3f}")
    record = {"machine": finish_machine(info), "candidate": new, "shipped": old, "curve": curve,
              "curve_per_digit": args.curve_per_digit, "passes": not fails, "fails": fails,
              "extra_emas": [{**p, "fails": verdict(p, old)} for p in extras]}
    with atomic_path(run / "gate.json") as tmp:  # an interrupted gate leaves the previous verdict whole
        tmp.write_text(json.dumps(record, indent=2))
    plot_time_to_quality({"this run": curve}, run / "time_to_quality.png",
                         f"{run}: {args.curve_per_digit * 10} images per domain per point")
    print("PASS: ship it" if not fails else "NOT shipped: " + "; ".join(fails))
    return 0 if not fails else 1


if __name__ == "__main__":
    sys.exit(main())
