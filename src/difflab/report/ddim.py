"""Report sections from the DDIM job on the digit model: eta grid, slerp vs lerp (with the noise norms),
and the inversion round trip. Each calls `difflab.ddim`'s API exactly as its CLI command does, so the
command in the caption rewrites the same files.
"""

from __future__ import annotations

import math
import shutil

import numpy as np
import torch

from difflab.report.context import Context, device_flag
from difflab.report.html import figure, table
from difflab.viz import save_image

DOMAIN = "mnistm"  # the DDIM figures use one domain: they are about the sampler, not the data


def _ddim_config(ctx: Context):
    from difflab.ddim.config import DDIMConfig

    return DDIMConfig(steps=ctx.cfg.ddim_steps, seed=ctx.cfg.seed)


def _model(ctx: Context, guidance: float):
    from difflab.models.loaders import load_digits

    return load_digits(ctx.model_path, ctx.cfg.digit, DOMAIN, guidance, device=ctx.cfg.device)


def _model_flags(ctx: Context, guidance: float) -> list[str]:
    return ["--digit", str(ctx.cfg.digit), "--domain", DOMAIN, "--guidance", f"{guidance:g}",
            *ctx.model_flag(ddim=True), *device_flag(ctx.cfg.device)]


def eta_grid(ctx: Context) -> str:
    from difflab.ddim.run import eta_grid as make_grid
    from difflab.ddim.run import starting_noise

    c, cfg = ctx.cfg, _ddim_config(ctx)
    model = _model(ctx, c.guidance)
    stems, noise = starting_noise(model, None, c.eta_columns, cfg.seed)
    image = make_grid(model, cfg, list(c.etas), stems, noise, progress=ctx.progress)
    save_image(image, ctx.stage / "ddim" / "eta_grid" / "eta_grid.png")
    cmd = ctx.command("ddim", "eta-grid", ctx.path("ddim/eta_grid"), "--etas", *(f"{e:g}" for e in c.etas),
                      "--columns", str(c.eta_columns), *_model_flags(ctx, c.guidance), "--steps", str(cfg.steps),
                      "--seed", str(cfg.seed), "--overwrite")
    return figure(
        "ddim/eta_grid/eta_grid.png", "DDIM eta grid",
        f"DDIM with {cfg.steps} steps on the digit model (digit {c.digit}, {DOMAIN}, guidance {c.guidance:g}). "
        f"Columns: {c.eta_columns} starting noises; rows: eta from {c.etas[0]:g} (the deterministic ODE "
        f"sampler) to {c.etas[-1]:g} (DDPM's posterior variance). Each row starts from the same noise; "
        f"eta > 0 adds fresh noise at every step, so images drift away from the eta = 0 row as eta grows.",
        cmd)


def interpolation(ctx: Context) -> str:
    from difflab.ddim.interpolate import interpolate, save_norms_plot
    from difflab.ddim.run import starting_noise

    c, cfg = ctx.cfg, _ddim_config(ctx)
    model = _model(ctx, c.guidance)
    x0, x1 = starting_noise(model, None, 2, cfg.seed)[1]
    alphas = [round(i / (c.interp_num - 1), 6) for i in range(c.interp_num)]  # as `ddim interpolate`
    image, norms = interpolate(model, cfg, x0, x1, alphas, progress=ctx.progress)
    folder = ctx.stage / "ddim" / "interpolation"
    save_image(image, folder / "interpolation.png")
    save_norms_plot(norms, x0.numel(), folder / "norms.png")
    radius = math.sqrt(x0.numel())
    ctx.numbers["interpolation"] = {"alphas": alphas, "slerp_norm": [n[1] for n in norms],
                                    "lerp_norm": [n[2] for n in norms], "sqrt_D": radius}
    cmd = ctx.command("ddim", "interpolate", ctx.path("ddim/interpolation"), "--num", str(c.interp_num),
                      *_model_flags(ctx, c.guidance), "--steps", str(cfg.steps), "--seed", str(cfg.seed),
                      "--overwrite")
    mid = min(norms, key=lambda n: abs(n[0] - 0.5))
    parts = [
        figure("ddim/interpolation/interpolation.png", "slerp vs lerp",
               f"Between two starting noises (alpha = 0 and 1), DDIM ({cfg.steps} steps, eta 0) from "
               f"spherical (slerp, top) and linear (lerp, bottom) interpolations of the noise. Same "
               f"endpoints; in between, lerp's noise is too short (at alpha {mid[0]:g}: norm {mid[2]:.1f} "
               f"against {mid[1]:.1f} for slerp and sqrt(D) = {radius:.1f}), noise the model never saw at "
               f"t = T, so its middle images wash out.", cmd),
        figure("ddim/interpolation/norms.png", "noise norms",
               f"Norm of the interpolated noise against alpha. A standard Gaussian in D = {x0.numel()} "
               "dimensions lies near the sphere of radius sqrt(D) (dashed); slerp stays on it, lerp cuts "
               "inside. Written by the same command.", cmd, width=520),
        table(["alpha", *(f"{a:.2f}" for a in alphas)],
              [["|slerp|", *(f"{n[1]:.2f}" for n in norms)], ["|lerp|", *(f"{n[2]:.2f}" for n in norms)]],
              f"Noise norms (sqrt(D) = {radius:.2f})."),
    ]
    return "".join(parts)


def inversion(ctx: Context) -> str:
    from difflab.ddim.noise import load_noise_file
    from difflab.ddim.run import invert_dir
    from difflab.io import load_image, to_uint8
    from difflab.viz import grid

    c, cfg = ctx.cfg, _ddim_config(ctx)
    src = ctx.stage / "ddim" / "inversion_input"
    src.mkdir(parents=True, exist_ok=True)
    for k in range(1, c.invert_count + 1):  # the first generated images of the reverse-process digit
        shutil.copyfile(ctx.stage / "digits" / DOMAIN / f"{c.digit}_{k:03d}.png", src / f"{c.digit}_{k:03d}.png")
    model = _model(ctx, c.invert_guidance)
    out = ctx.stage / "ddim" / "inversion"
    r = invert_dir(src, out, model, cfg, progress=ctx.progress)
    ctx.numbers["inversion"] = r
    noise = torch.stack([load_noise_file(out / f"{s}.pt") for s in r["stems"]])
    orig = np.stack([load_image(src / f"{s}.png") for s in r["stems"]])
    recon = np.stack([load_image(out / "reconstructed" / f"{s}.png") for s in r["stems"]])
    diff = np.clip(np.abs(orig.astype(int) - recon.astype(int)) * 4, 0, 255).astype(np.uint8)
    tiles = np.concatenate([orig, to_uint8(noise, "minmax"), recon, diff])
    image = grid(tiles, ncols=len(r["stems"]), scale=3, col_labels=r["stems"],
                 row_labels=["image", "inverted noise", "reconstruction", "|difference| x4"],
                 title=f"DDIM inversion round trip, {cfg.steps} steps, guidance {c.invert_guidance:g}")
    save_image(image, ctx.stage / "ddim" / "inversion.png")
    cmd = ctx.command("ddim", "invert", ctx.path("ddim/inversion_input"), ctx.path("ddim/inversion"),
                      *_model_flags(ctx, c.invert_guidance), "--steps", str(cfg.steps), "--seed", str(cfg.seed),
                      "--overwrite")
    mean = float(np.mean(r["mse"]))
    return "".join([
        figure("ddim/inversion.png", "DDIM inversion round trip",
               f"Image -> noise -> image. The first {len(r['stems'])} generated {DOMAIN} images of digit "
               f"{c.digit} (copied to ddim/inversion_input/) are run backwards through the deterministic "
               f"DDIM ODE ({cfg.steps} steps, conditional model: guidance {c.invert_guidance:g}) to a noise "
               f"(shown min-max scaled), then sampled forwards again. Mean reconstruction MSE {mean:.2e} "
               f"(0-1 pixel scale). The command writes the noises and reconstructions; this figure "
               f"puts them side by side.", cmd),
        table(["image", "reconstruction MSE (0-1 scale)", "std of the inverted noise"],
              [[s, f"{m:.3e}", f"{sd:.3f}"] for s, m, sd in zip(r["stems"], r["mse"], r["noise_std"])]
              + [["mean", f"{mean:.3e}", ""]],
              "A noise std near 1 means the inversion landed on noise that looks like the sampler's input."),
    ])
