"""Accuracy against Fréchet distance along the guidance scale, one curve per model (seed_spread.py's JSONs).

A recipe changes the image statistics *and* how strongly a given guidance scale w acts, so two models
compared at one w can trade places at another (docs/RESULTS.md §9, session 19). This plots each model's
five-seed means at every w measured, per domain, so models are compared along their curves, and prints
the points as a table.

    cd benchmarks/results && ../../.venv/bin/python ../plot_guidance_frontier.py \\
        --curve "teacher=seed_spread_teacher.json,seed_spread_teacher_w25_w2.json" \\
        --curve "log-SNR hour=seed_spread_release8.json,seed_spread_release8_w25.json" \\
        --out ../../docs/results/guidance_frontier.png
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from difflab.data import DOMAINS  # noqa: E402
from difflab.viz import save_figure  # noqa: E402


def load_curve(spec: str) -> tuple[str, dict[float, dict]]:
    """"LABEL=A.json,B.json" -> (label, {w: {domain: {"acc", "fd"}}}) from the files' five-seed means."""
    label, _, files = spec.partition("=")
    if not label or not files:
        raise SystemExit(f"--curve {spec!r}: expected LABEL=FILE.json[,FILE.json...]")
    points: dict[float, dict] = {}
    for name in files.split(","):
        path = Path(name)
        try:
            record = json.loads(path.read_text())
            points.update({float(w): r["mean"] for w, r in record["results"].items()})
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise SystemExit(f"{path}: not a seed_spread.py record ({type(e).__name__}: {e})") from None
    return label, dict(sorted(points.items()))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--curve", action="append", required=True, help="LABEL=seed_spread JSON[,JSON...]")
    ap.add_argument("--out", default="docs/results/guidance_frontier.png")
    args = ap.parse_args(argv)
    curves = [load_curve(c) for c in args.curve]

    print("| model | w | accuracy MNIST-M / SVHN | Fréchet MNIST-M / SVHN |\n|---|---|---|---|")
    for label, points in curves:
        for w, m in points.items():
            print(f"| {label} | {w:g} | {m['mnistm']['acc']:.4f} / {m['svhn']['acc']:.4f} "
                  f"| {m['mnistm']['fd']:.3f} / {m['svhn']['fd']:.3f} |")

    fig, axes = plt.subplots(1, 2, figsize=(14, 4.5), dpi=110)
    for ax, domain in zip(axes, DOMAINS):
        for i, (label, points) in enumerate(curves):
            ws = list(points)
            fd = [points[w][domain]["fd"] for w in ws]
            acc = [points[w][domain]["acc"] for w in ws]
            # the first curve (the reference) in black; the others through tab10, dashed once it repeats
            style = (dict(color="black", lw=2.0) if i == 0 else
                     dict(color=plt.cm.tab10((i - 1) % 10), ls="-" if i <= 10 else "--"))
            line, = ax.plot(fd, acc, marker="o", label=label, **style)
            for w, x, y in zip(ws, fd, acc):
                ax.annotate(f"w {w:g}", (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8,
                            color=line.get_color())
        ax.axhline(0.995, color="grey", lw=0.8, ls="--")
        ax.set(title=f"{domain}: mean of 5 seeds x 500 images", xlabel="Fréchet distance (lower is better)",
               ylabel="own-classifier accuracy")
        ax.grid(alpha=0.3)
    # outside the axes: inside, it hid points wherever it was put (a curve can reach any corner)
    axes[1].legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1))
    save_figure(fig, args.out)  # atomically: never a half-written plot
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
