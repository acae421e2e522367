"""`difflab digits sweep OUT_DIR --guidance 0,1,2,3,5,7`: the correctness/diversity trade-off of the
classifier-free guidance scale w.

Every scale generates the *same* seeds (the same x_T per image; `digits generate` with only --guidance
changed) into OUT_DIR/guidance_{w}/ in the standard layout, and is evaluated like `digits eval`: digit
accuracy by the domain's own classifier (correctness) and the Fréchet distance of classifier features to
real images (diversity and fidelity; real vs real at the same sample size is its noise level). Writes
sweep.csv, sweep.png (both metrics against w) and strip.png (the first image of every digit at every scale).
"""

from __future__ import annotations

import csv
import io
import shutil
import time
from dataclasses import replace

import numpy as np

from difflab.checks import check_guidance, parse_list
from difflab.data import DOMAINS
from difflab.digits.generate import GenerateConfig, generate
from difflab.errors import DifflabError
from difflab.io import atomic_path, load_image, staged_output_dir
from difflab.viz import save_figure, save_image

DEFAULT_SCALES = (0.0, 1.0, 2.0, 3.0, 5.0, 7.0)
SWEEP_PER_DIGIT = 10  # 200 images per scale: the whole default sweep is about a minute on 2 cores
COLUMNS = ["guidance", *(f"{m}_{k}" for m in DOMAINS for k in ("acc", "fd", "fd_real")), "mean_acc", "seconds"]


def parse_scales(text: str | list, flag: str = "--guidance") -> list[float]:
    """'0,1,2' (or a list) -> [0.0, 1.0, 2.0]; refuse scales outside [0, MAX_GUIDANCE], NaN/inf, repeats and
    an empty list."""
    scales = parse_list(text, float, flag, "0,1,3")
    if not scales:
        raise DifflabError(f"{flag}: give at least one scale")
    for w in scales:
        check_guidance(flag, w)
    if len(set(scales)) != len(scales):
        raise DifflabError(f"{flag}: {text!r} repeats a scale")
    return scales


def folder_name(w: float) -> str:
    return f"guidance_{w:g}"


def sweep(out_dir, model, schedule, cfg: GenerateConfig, scales, classifiers: dict | None = None,
          data_root=None, overwrite: bool = False, progress: bool = True, reuse: dict | None = None
          ) -> list[dict]:
    """Generate + evaluate at every scale (cfg.guidance is ignored); return one row per scale (COLUMNS).

    reuse: {scale: folder} of `digits generate` outputs made with exactly `cfg` at that scale (the
    report's own grids), copied instead of generated again: the same files, minutes saved.
    The output folder is built aside and moved into place complete, as `digits generate` does.
    """
    from difflab.digits.evaluate import evaluate
    from difflab.models.digits import default_classifier_path, load_classifier

    scales = parse_scales(scales)
    cfg.check()
    for m in DOMAINS:  # a missing classifier must fail now, not after the first scale's images
        load_classifier((classifiers or {}).get(m) or default_classifier_path(m))
    rows = []
    with staged_output_dir(out_dir, overwrite) as stage:
        for w in scales:
            t0 = time.perf_counter()
            sub = stage / folder_name(w)
            if w in (reuse or {}):
                shutil.copytree(reuse[w], sub)
            else:
                generate(sub, model, schedule, replace(cfg, guidance=w), progress=progress)
            res = evaluate(sub, classifiers, data_root=data_root, seed=0, device=cfg.device)
            row = {"guidance": w, "mean_acc": res["mean_acc"], "seconds": time.perf_counter() - t0}
            for m, r in res["domains"].items():
                row.update({f"{m}_acc": r["acc"], f"{m}_fd": r["fd_generated_vs_real"],
                            f"{m}_fd_real": r["fd_real_vs_real"]})
            rows.append(row)
        write_csv(rows, stage / "sweep.csv")
        plot_sweep(rows, stage / "sweep.png", title=f"{cfg.per_digit} images per digit and domain, "
                   f"{cfg.sampler} {cfg.steps} steps, seed {cfg.seed}")
        save_image(strip(stage, scales), stage / "strip.png")
    return rows


def write_csv(rows: list[dict], path) -> None:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: (f"{r[k]:.2f}" if k == "seconds" else f"{r[k]:g}" if k == "guidance" else f"{r[k]:.6f}")
                    for k in COLUMNS})
    with atomic_path(path) as tmp:
        tmp.write_text(buf.getvalue())


def plot_sweep(rows: list[dict], path, title: str = "") -> None:
    """Two panels against w: accuracy (per domain + mean) and Fréchet distance (with real vs real)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    w = [r["guidance"] for r in rows]
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(9, 3.4), dpi=110)
    for m, style in zip(DOMAINS, ("o-", "s-")):
        a1.plot(w, [r[f"{m}_acc"] for r in rows], style, label=m)
        line = a2.plot(w, [r[f"{m}_fd"] for r in rows], style, label=f"{m} generated vs real")[0]
        # real vs real is the same at every scale (same real images, same sample size)
        a2.axhline(float(np.mean([r[f"{m}_fd_real"] for r in rows])), color=line.get_color(), ls="--",
                   lw=1, label=f"{m} real vs real")
    a1.plot(w, [r["mean_acc"] for r in rows], "k^--", lw=1, label="mean")
    a1.set(xlabel="guidance scale w", ylabel="classifier accuracy (higher: more correct)", ylim=(0, 1.02))
    a2.set(xlabel="guidance scale w", ylabel="Fréchet distance (lower: closer to real)")
    for a in (a1, a2):
        a.grid(alpha=0.3)
        a.legend(fontsize=7)
    save_figure(fig, path, title)


def strip(folder, scales):
    """Rows = scales, columns = digits 0-9 of each domain: image {d}_001 (the same x_T in every row)."""
    from difflab.viz import grid

    tiles = [load_image(folder / folder_name(w) / m / f"{d}_001.png") for w in scales for m in DOMAINS
             for d in range(10)]
    return grid(np.stack(tiles), ncols=10 * len(DOMAINS), scale=2, row_labels=[f"w={w:g}" for w in scales],
                col_labels=[str(d) for _ in DOMAINS for d in range(10)],
                title=f"same seeds at every guidance scale: {' (left), '.join(DOMAINS)} (right)")

