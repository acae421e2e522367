"""Report sections on the digit model: grids + accuracy/Fréchet table, reverse process, guidance sweep.

Each section calls the same API function as the command in its caption, with the same settings, so the
command regenerates the same files (tests/report checks this for the reverse process and the sweep).
"""

from __future__ import annotations

import numpy as np

from difflab.data import DOMAINS
from difflab.digits.evaluate import PRETTY
from difflab.io import load_image
from difflab.report.context import Context, device_flag
from difflab.report.html import command_block, figure, paragraph, table
from difflab.viz import save_image


def gen_flags(cfg) -> list[str]:
    """The `digits generate/reverse/sweep` flags that fix the images (guidance is added by the caller)."""
    flags = ["--per-digit", str(cfg.per_digit), "--steps", str(cfg.steps), "--sampler", cfg.sampler,
             "--eta", f"{cfg.eta:g}", "--seed", str(cfg.seed), "--batch-size", str(cfg.batch_size)]
    return flags + ([] if cfg.bf16 else ["--fp32"]) + device_flag(cfg.device)


def classifier_flags(ctx: Context) -> list[str]:
    flags = []
    for m in DOMAINS:
        if ctx.classifiers.get(m):
            flags += [f"--{m}-classifier", str(ctx.classifiers[m])]
    return flags + (["--data-root", str(ctx.data_root)] if ctx.data_root else [])


def grids_and_table(ctx: Context) -> str:
    from difflab.digits.evaluate import evaluate
    from difflab.digits.generate import generate

    cfg = ctx.cfg.generate_config()
    timing = generate(ctx.stage / "digits", ctx.model, ctx.schedule, cfg, progress=ctx.progress)
    res = evaluate(ctx.stage / "digits", ctx.classifiers, data_root=ctx.data_root, device=cfg.device)
    ctx.numbers["digits"] = {"generate": timing, "eval": res}
    gen = ctx.command("digits", "generate", ctx.path("digits"), "--guidance", f"{cfg.guidance:g}",
                      *gen_flags(cfg), *ctx.model_flag(), "--overwrite")
    n = cfg.per_digit
    parts = []
    for m in DOMAINS:
        parts.append(figure(
            f"digits/{m}_grid.png", f"{PRETTY[m]} digits",
            f"{PRETTY[m]}: one row per digit 0-9 (the label asked for), columns = the first {min(10, n)} of the "
            f"{n} images generated per digit, at guidance {cfg.guidance:g} with {cfg.sampler.upper()} "
            f"{cfg.steps} steps, seed {cfg.seed}; each 28x28 image is shown at 2x. All {10 * n} images "
            f"are in digits/{m}/.", gen))
    rows = [[PRETTY[m], f"{r['acc']:.4f} ({r['correct']}/{r['total']})", f"{r['real_val_acc']:.4f}",
             f"{r['fd_generated_vs_real']:.3f}", f"{r['fd_real_vs_real']:.3f}"] for m, r in res["domains"].items()]
    rows.append(["mean", f"{res['mean_acc']:.4f}", "", "", ""])
    parts.append(table(
        ["domain", "accuracy on generated (correct/total)", "classifier acc. on real val",
         "Fréchet gen. vs real", "Fréchet real vs real"], rows,
        f"Accuracy: the domain's own classifier agrees with the digit asked for (the real-validation "
        f"accuracy beside it says how far to trust that classifier). Fréchet distance between the "
        f"classifier's penultimate features of generated and real validation images (lower is better); "
        f"real vs real is the distance between two real samples of the same sizes: what sampling noise "
        f"alone gives, so values near it are as close to real as {10 * n} images can tell. {10 * n} images per "
        f"domain: one mistake moves the accuracy by {100 / (10 * n):.2f} points."))
    parts.append(paragraph("Regenerate the table (after the images above):"))
    parts.append(command_block(ctx.command("digits", "eval", ctx.path("digits"), *classifier_flags(ctx),
                                           *device_flag(cfg.device))))
    parts.append(paragraph(f"Generation took {timing['total_s']:.1f} s for {timing['images']} images "
                           f"(network {timing['network_s']:.1f} s, everything else {timing['other_s']:.1f} s).",
                           "note"))
    return "".join(parts)


def reverse(ctx: Context) -> str:
    from difflab.digits.reverse import reverse_figure

    cfg, d = ctx.cfg.generate_config(), ctx.cfg.digit
    fig = reverse_figure(ctx.model, ctx.schedule, cfg, d, DOMAINS, ctx.cfg.timesteps, ctx.progress)
    save_image(fig.image, ctx.stage / "reverse.png")
    same = {}
    if fig.levels[-1] == 0:  # the final frame is the generated image: check it really is
        for m in DOMAINS:
            png = load_image(ctx.stage / "digits" / m / f"{d}_001.png")
            same[m] = bool(np.array_equal(fig.frames[m]["x"][-1], png))
    ctx.numbers["reverse"] = {"levels": fig.levels, "identical_to_generated": same}
    cmd = ctx.command("digits", "reverse", ctx.path("reverse.png"), "--digit", str(d), "--domain", "both",
                      "--timesteps", ",".join(map(str, ctx.cfg.timesteps)), "--guidance", f"{cfg.guidance:g}",
                      *gen_flags(cfg), *ctx.model_flag(), "--overwrite")
    check = ""
    if same:
        verdict = "; ".join(f"digits/{m}/{d}_001.png: {'pixel-identical' if ok else 'DIFFERENT'}"
                            for m, ok in same.items())
        check = f" Last column checked against the generated images: {verdict}."
    caption = (f"The reverse process of image {d}_001 of each domain, replaying the exact trajectory of the "
               f"grids above (same seed and settings). For each domain the upper row is x_t, the image "
               f"being denoised, and the lower row the model's prediction of the final image x_0 from "
               f"x_t at that step. Columns: the visited steps nearest to t = "
               f"{', '.join(map(str, ctx.cfg.timesteps))}, labelled with the real t (DDPM numbering: "
               f"x_T is the starting noise, t = 0 the final image). The prediction settles on the digit "
               f"long before the noise is gone.{check}")
    return figure("reverse.png", "reverse process", caption, cmd)


def sweep(ctx: Context) -> str:
    from difflab.digits.sweep import sweep as run_sweep

    cfg = ctx.cfg.generate_config(per_digit=ctx.cfg.sweep_per_digit)
    scales = list(ctx.cfg.sweep_scales)
    # the grids above are this sweep's images at their scale when the sizes agree: copy, don't redo
    reuse = {ctx.cfg.guidance: ctx.stage / "digits"} if ctx.cfg.per_digit == cfg.per_digit else {}
    rows = run_sweep(ctx.stage / "sweep", ctx.model, ctx.schedule, cfg, scales, ctx.classifiers,
                     ctx.data_root, progress=ctx.progress, reuse=reuse)
    ctx.numbers["sweep"] = rows
    cmd = ctx.command("digits", "sweep", ctx.path("sweep"), "--guidance", ",".join(f"{w:g}" for w in scales),
                      *gen_flags(cfg), *ctx.model_flag(), *classifier_flags(ctx), "--overwrite")
    n = 10 * cfg.per_digit
    parts = [figure(
        "sweep/sweep.png", "accuracy and Fréchet distance against the guidance scale",
        f"Classifier-free guidance scale w (0 = unconditional model, 1 = conditional, > 1 = guided) "
        f"against digit accuracy (left) and the Fréchet distance to real images (right; dashed: the "
        f"distance between two real samples of the same size). Every scale draws the same {n} starting "
        f"noises per domain. Higher w makes the digits more often correct while the distance to the real "
        f"distribution (diversity, realism) eventually grows: the correctness/diversity trade-off. Values "
        f"in sweep/sweep.csv.", cmd),
        figure("sweep/strip.png", "same seeds at every scale",
               "Image d_001 of every digit d at each scale (rows): the same starting noise, so each column "
               "shows how guidance changes one sample. Left MNIST-M, right SVHN.", cmd)]
    head = ["w", *(f"{PRETTY[m]} {k}" for m in DOMAINS for k in ("acc.", "Fréchet")), "mean acc.", "time (s)"]
    body = [[f"{r['guidance']:g}", *(f"{r[f'{m}_{k}']:.{p}f}" for m in DOMAINS for k, p in (("acc", 4), ("fd", 3))),
             f"{r['mean_acc']:.4f}", f"{r['seconds']:.1f}"] for r in rows]
    floor = ", ".join(f"{PRETTY[m]} {np.mean([r[f'{m}_fd_real'] for r in rows]):.3f}" for m in DOMAINS)
    same = [w for w in scales if w in reuse]
    note = (f" The images at w = {same[0]:g} are those of the grids above (same seeds and settings), copied "
            "rather than generated twice, hence its short time." if same else "")
    parts.append(table(head, body, f"{n} images per domain at each scale; Fréchet real vs real: {floor}.{note}"))
    return "".join(parts)
