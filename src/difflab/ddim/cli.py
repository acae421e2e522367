"""`difflab ddim noise|sample|mse|eta-grid|interpolate|invert`. Parsing and printing only.

Module level imports stay light (argparse + the config dataclasses): torch and friends load in handlers.
Settings come from the dataclasses of ddim/config.py through difflab.config_args, with the words below.
"""

from __future__ import annotations

import argparse
from dataclasses import fields
from pathlib import Path

from difflab.config_args import Flag, add_config_args, config_from_args, option_help
from difflab.ddim.config import FINAL_ALPHAS, PIXEL_MODES, SAMPLERS, DDIMConfig, EtaGridConfig, InterpolateConfig
from difflab.errors import DifflabError

D = DDIMConfig()
CONFIG_FLAGS = tuple(f.name for f in fields(DDIMConfig))
SCHEDULES = ("linear", "scaled_linear", "cosine")

# what each DDIMConfig field means on the command line
DDIM_WORDS = {
    "steps": "sampler steps",
    "sampler_name": Flag("ddim, or the ODE solvers DPM-Solver++(2M) / UniPC: fewer steps for the same quality, "
                         "one network call per step", flag="--sampler", choices=SAMPLERS),
    "karras": "Karras noise levels (dpmpp-2m, unipc); they place their own timesteps",
    "spacing": Flag("timestep spacing", choices=("leading", "trailing", "linspace"),
                    shown="leading for ddim, linspace for dpmpp-2m/unipc, as diffusers"),
    "offset": "added to leading timesteps (1: 981..1)",
    "eta": "0 = deterministic, 1 = DDPM-like",
    "clip_x0": Flag("clip predicted x0 to [-C, C]", metavar="C", shown="no clipping"),
    "final_alpha": Flag("alpha_bar after the last step: 1.0 (one) or alpha_bar[0] (first)", choices=FINAL_ALPHAS),
    "beta_schedule": Flag("noise schedule", choices=SCHEDULES, shown="the model's own, else linear"),
    "beta_start": Flag("first beta of the schedule", shown="the model's, else 1e-4"),
    "beta_end": Flag("last beta of the schedule", shown="the model's, else 0.02"),
    "train_timesteps": Flag("training timesteps T", shown="the model's, else 1000"),
    "batch_size": "images per network batch",
    "seed": "seeds the noise for eta > 0 (and drawn noise)",
    "to_pixels": Flag("clamp: (x+1)/2 clipped; minmax: each image scaled to its own min..max", choices=PIXEL_MODES),
    "invert_iters": Flag("fixed-point iterations per step: K network calls per step; 0 = the classic first-order "
                         "inversion (1 call, far less exact)", metavar="K"),
}
ETA_GRID_WORDS = {"etas": Flag("rows: the etas to sample with", metavar="ETA"),
                  "columns": "noises (columns): the first of --noise-dir, else drawn from --seed"}
INTERPOLATE_WORDS = {"num": "images from noise a to noise b: alphas 0, 1/(num-1), ..., 1"}


def _model(args):
    """Build the EpsModel the flags name (default: our shipped digit model)."""
    from difflab.models import loaders

    digit_flags = [f for f in ("digit", "domain", "guidance") if getattr(args, f) is not None]
    if args.unet_module or args.diffusers_unet:
        if args.unet_module and args.diffusers_unet:
            raise DifflabError("--unet-module and --diffusers-unet: give one model, not both")
        stray = (["digits-model"] if args.digits_model else []) + digit_flags
        if stray:
            raise DifflabError(f"--{stray[0]} only applies to the digit model")
    if args.weights and not args.unet_module:
        raise DifflabError("--weights goes with --unet-module FILE.py:CLASS")
    if args.unet_module:
        if not args.weights:
            raise DifflabError("--unet-module needs --weights FILE")
        return loaders.load_user_unet(args.unet_module, args.weights, args.unet_kwargs, args.weights_key,
                                      device=args.device)
    if args.diffusers_unet:
        return loaders.load_diffusers_unet(args.diffusers_unet, device=args.device)
    return loaders.load_digits(args.digits_model, 0 if args.digit is None else args.digit,
                               args.domain or "mnistm", 3.0 if args.guidance is None else args.guidance,
                               device=args.device)


def _config(args) -> DDIMConfig:
    """The DDIMConfig of the flags (it checks itself when built) and --shape, before any model or file is
    read (--digit and --guidance are checked by `loaders.load_digits` before it reads the model)."""
    cfg = config_from_args(DDIMConfig, args)
    if getattr(args, "shape", None) is not None:
        from difflab.ddim.noise import check_shape

        check_shape(args.shape)
    return cfg


def _sample(args):
    from difflab.ddim.run import sample_dir

    cfg, model = _config(args), _model(args)
    r = sample_dir(args.noise_dir, args.out_dir, model, cfg, args.overwrite)
    n = len(r["stems"])
    how = f"eta {cfg.eta:g}" if cfg.sampler_name == "ddim" else cfg.sampler_name + (" karras" if cfg.karras else "")
    print(f"{model.description}: {n} images, {r['steps']} steps, {how} -> {args.out_dir}")
    print(f"time: {r['seconds']:.2f} s ({r['seconds'] / n:.3f} s/image)")


def _mse(args):
    from difflab.ddim.mse import compare_dirs

    rows = compare_dirs(args.out_dir, args.gt_dir)
    print(f"{'image':<12}{'MSE (0-255 scale)':>20}{'MSE (0-1 scale)':>20}{'max |diff| (0-255)':>20}")
    for stem, m255, m1, worst in rows:
        print(f"{stem:<12}{m255:>20.6f}{m1:>20.3e}{worst:>20d}")
    mean255 = sum(r[1] for r in rows) / len(rows)
    print(f"{'mean':<12}{mean255:>20.6f}{mean255 / 255**2:>20.3e}{max(r[3] for r in rows):>20d}")


def _eta_grid(args):
    from difflab.ddim.run import eta_grid, starting_noise
    from difflab.io import staged_output_dir
    from difflab.viz import save_image

    cfg, grid = _config(args), config_from_args(EtaGridConfig, args)
    model = _model(args)
    with staged_output_dir(args.out_dir, args.overwrite) as stage:
        stems, noise = starting_noise(model, args.noise_dir, grid.columns, cfg.seed, args.shape)
        save_image(eta_grid(model, cfg, list(grid.etas), stems, noise), stage / "eta_grid.png")
    print(Path(args.out_dir) / "eta_grid.png")


def _interpolate(args):
    import csv
    import io

    from difflab.ddim.interpolate import interpolate, save_norms_plot
    from difflab.ddim.noise import load_noise_file
    from difflab.ddim.run import starting_noise
    from difflab.io import atomic_path, staged_output_dir
    from difflab.viz import save_image

    cfg, num = _config(args), config_from_args(InterpolateConfig, args).num
    if (args.noise_a is None) != (args.noise_b is None):
        raise DifflabError("--noise-a and --noise-b go together (or give neither to draw both from --seed)")
    model = _model(args)
    if args.noise_a is not None:
        x0 = load_noise_file(args.noise_a, model.sample_shape)
        x1 = load_noise_file(args.noise_b, model.sample_shape)
        if x0.shape != x1.shape:
            raise DifflabError(f"{args.noise_b}: shape {tuple(x1.shape)} differs from {tuple(x0.shape)}")
    else:
        x0, x1 = starting_noise(model, None, 2, cfg.seed, args.shape)[1]
    alphas = [round(i / (num - 1), 6) for i in range(num)]
    out, dim = Path(args.out_dir), x0.numel()
    with staged_output_dir(out, args.overwrite) as stage:
        image, norms = interpolate(model, cfg, x0, x1, alphas)
        save_image(image, stage / "interpolation.png")
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(["alpha", "slerp_norm", "lerp_norm", "sqrt_D"])
        for a, s, l in norms:
            w.writerow([f"{a:.2f}", f"{s:.4f}", f"{l:.4f}", f"{dim ** 0.5:.4f}"])
        with atomic_path(stage / "norms.csv") as tmp:
            tmp.write_text(buf.getvalue())
        save_norms_plot(norms, dim, stage / "norms.png")
    print(f"noise norms (a standard Gaussian in D={dim} dims sits near sqrt(D) = {dim ** 0.5:.2f}):")
    print(f"{'alpha':>6}{'|slerp|':>10}{'|lerp|':>10}")
    for a, s, l in norms:
        print(f"{a:>6.2f}{s:>10.2f}{l:>10.2f}")
    print(f"wrote {out}/interpolation.png, norms.csv, norms.png")


def _invert(args):
    from difflab.ddim.run import invert_dir

    cfg, model = _config(args), _model(args)
    r = invert_dir(args.images_dir, args.out_dir, model, cfg, args.overwrite)
    print(f"{model.description}: inverted {len(r['stems'])} images at {cfg.steps} steps, "
          f"{cfg.invert_iters} fixed-point iteration(s) per step -> {args.out_dir}")
    print(f"{'image':<12}{'recon MSE (0-1)':>18}{'noise std':>12}")
    for stem, m, s in zip(r["stems"], r["mse"], r["noise_std"]):
        print(f"{stem:<12}{m:>18.3e}{s:>12.3f}")
    print(f"{'mean':<12}{sum(r['mse']) / len(r['mse']):>18.3e}")
    print(f"time: {r['seconds']:.2f} s (inversion + re-sampling); "
          f"reconstructions in {args.out_dir}/reconstructed")


def _noise(args):
    from difflab.ddim.noise import make_noise, save_noise, stem_names
    from difflab.io import staged_output_dir

    x = make_noise(args.count, tuple(args.shape), args.seed)
    with staged_output_dir(args.out_dir, args.overwrite) as stage:
        for stem, z in zip(stem_names(args.count), x):
            save_noise(stage / f"{stem}.pt", z)
    print(f"{args.count} noise tensors (1, {', '.join(map(str, args.shape))}) -> {Path(args.out_dir)}")


def _add_model(p):
    g = p.add_argument_group("model (default: the shipped digit model)")
    g.add_argument("--digits-model", metavar="PATH", help=option_help("a difflab digit checkpoint", "the shipped one"))
    g.add_argument("--digit", type=int, help=option_help("digit 0-9 for the digit model", "0"))
    g.add_argument("--domain", choices=["mnistm", "svhn"], help=option_help("digit model domain", "mnistm"))
    g.add_argument("--guidance", type=float, help=option_help("classifier-free guidance for the digit model", "3"))
    g.add_argument("--unet-module", metavar="FILE.py:CLASS",
                   help=option_help("your model class, e.g. UNet.py:UNet (with --weights)", "the digit model"))
    g.add_argument("--weights", metavar="FILE", help=option_help("its state dict (.pt/.pth/.safetensors)", "none"))
    g.add_argument("--unet-kwargs", metavar="JSON",
                   help=option_help("constructor arguments as a JSON object", "no arguments"))
    g.add_argument("--weights-key", help=option_help("key holding the state dict", "ema, state_dict, model"))
    g.add_argument("--diffusers-unet", metavar="DIR",
                   help=option_help("a diffusers UNet2DModel folder (needs diffusers)", "none"))
    from difflab.device import add_device_arg  # here, not at module level: it imports torch

    add_device_arg(g)


def _add_sampler(p, skip: tuple[str, ...]):
    """DDIMConfig's flags, less those the command has no use for."""
    add_config_args(p.add_argument_group("DDIM"), DDIMConfig, DDIM_WORDS, skip=skip)
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty output folder")


def _add_shape(p) -> None:
    p.add_argument("--shape", type=int, nargs=3, metavar=("C", "H", "W"),
                   help=option_help("noise size if drawn", "the model's"))


def register(sub: argparse._SubParsersAction) -> None:
    ddim = sub.add_parser("ddim", help="DDIM from given noise, MSE vs ground truth, eta grid, slerp, invert")
    s = ddim.add_subparsers(dest="ddim_command", required=True)

    p = s.add_parser("sample", help="NOISE_DIR/<stem>.pt -> OUT_DIR/<stem>.png")
    p.add_argument("noise_dir", help="folder of noise files <stem>.pt (`ddim noise` writes them)")
    p.add_argument("out_dir", help="output folder: <stem>.png")
    _add_model(p)
    _add_sampler(p, skip=("invert_iters",))
    p.set_defaults(func=_sample)

    p = s.add_parser("mse", help="per-image MSE between OUT_DIR and GT_DIR (0-255 and 0-1 scales)")
    p.add_argument("out_dir", help="images to compare")
    p.add_argument("gt_dir", help="ground-truth images of the same names")
    p.set_defaults(func=_mse)

    p = s.add_parser("eta-grid", help="OUT_DIR/eta_grid.png: rows eta, columns noise 00..03")
    p.add_argument("out_dir", help="output folder: eta_grid.png")
    add_config_args(p, EtaGridConfig, ETA_GRID_WORDS)
    p.add_argument("--noise-dir", help=option_help("take the first --columns noises here", "draw from --seed"))
    _add_shape(p)
    _add_model(p)
    _add_sampler(p, skip=("sampler_name", "karras", "eta", "invert_iters"))
    p.set_defaults(func=_eta_grid)

    p = s.add_parser("interpolate", help="slerp vs lerp between two noises: strip PNG + noise norms")
    p.add_argument("out_dir", help="output folder: interpolation.png, norms.csv, norms.png")
    p.add_argument("--noise-a", help=option_help("first noise .pt", "draw both from --seed"))
    p.add_argument("--noise-b", help=option_help("second noise .pt", "draw both from --seed"))
    add_config_args(p, InterpolateConfig, INTERPOLATE_WORDS)
    _add_shape(p)
    _add_model(p)
    _add_sampler(p, skip=("sampler_name", "karras", "invert_iters"))
    p.set_defaults(func=_interpolate)

    p = s.add_parser("invert", help="IMAGES_DIR -> noise (.pt) by the DDIM ODE, plus round-trip MSE")
    p.add_argument("images_dir", help="images to invert")
    p.add_argument("out_dir", help="output folder: <stem>.pt noises and reconstructed/")
    _add_model(p)
    _add_sampler(p, skip=("sampler_name", "karras", "eta", "to_pixels"))
    p.set_defaults(func=_invert)

    p = s.add_parser("noise", help="write COUNT standard-normal noise files OUT_DIR/00.pt ...")
    p.add_argument("out_dir", help="output folder: 00.pt, 01.pt, ...")
    p.add_argument("--count", type=int, default=10, help=option_help("noise files", "10"))
    p.add_argument("--shape", type=int, nargs=3, default=[3, 28, 28], metavar=("C", "H", "W"),
                   help=option_help("size of each noise", "3 28 28"))
    p.add_argument("--seed", type=int, default=D.seed, help=option_help("random seed", str(D.seed)))
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty output folder")
    p.set_defaults(func=_noise)
