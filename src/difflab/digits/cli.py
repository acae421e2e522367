"""`difflab digits ...` and `difflab data ...` subcommands."""

from __future__ import annotations

import argparse
from dataclasses import fields

from difflab.errors import DifflabError
from difflab.models.unet import UNetConfig


def _train(args):
    from difflab.digits.train import TrainConfig, train

    unet = UNetConfig(base_channels=args.base_channels, channel_mults=tuple(args.channel_mults),
                      num_res_blocks=args.num_res_blocks, attention_levels=tuple(args.attention_levels))
    names = {f.name for f in fields(TrainConfig)} - {"unet"}
    cfg = TrainConfig(**{k: v for k, v in vars(args).items() if k in names}, unet=unet)
    trainer = train(cfg, resume=args.resume, overwrite=args.overwrite)
    if trainer.rank == 0:
        print(f"EMA weights: {cfg.out_dir}/ema.safetensors (step {trainer.step})")


def _info(args):
    import json

    from difflab.digits.info import checkpoint_info

    print(json.dumps(checkpoint_info(args.model), indent=2))


def _train_classifier(args):
    from difflab.digits.classify import train_classifier
    from difflab.models.digits import default_classifier_path

    out = args.out or default_classifier_path(args.domain)
    _, acc = train_classifier(args.domain, out, epochs=args.epochs, seed=args.seed, data_root=args.data_root,
                              train_size=args.train_size, device=args.device)
    print(f"{args.domain} classifier: val acc = {acc:.4f} -> {out}")


def _distill(args):
    from difflab.digits.distill import DistillConfig, distill

    names = {f.name for f in fields(DistillConfig)}
    cfg = DistillConfig(**{k: v for k, v in vars(args).items() if k in names})
    r = distill(cfg)
    print(f"student: {r.student_path} (teacher trajectories {r.wall_s['trajectories_s']:.0f} s, "
          f"student training {r.wall_s['student_s']:.0f} s in this run)")


def _add_distill_args(p):
    from difflab.device import DEVICE_HELP
    from difflab.digits.distill import DistillConfig

    d = DistillConfig()
    helps = {"out_dir": "run folder (trajectories, checkpoint, student); re-running resumes",
             "teacher": "teacher digit model (default: the shipped one)",
             "student_steps": "DDIM steps of the student", "teacher_steps": "teacher DDIM steps per trajectory",
             "guidance_min": "lowest CFG scale the student learns", "guidance_max": "highest CFG scale",
             "guide": "the teacher's CFG target (digit or both)", "trajectories": "teacher trajectories",
             "traj_batch": "trajectories per chunk file", "steps": "student optimisation steps",
             "batch_size": "student batch", "lr": "peak learning rate (cosine)", "bf16": "bf16 autocast",
             "device": DEVICE_HELP}
    for f in fields(DistillConfig):
        default = getattr(d, f.name)
        flag = f"--{f.name.replace('_', '-')}"
        h = f"{helps.get(f.name, f.name.replace('_', ' '))} (default: {default})"
        if isinstance(default, bool):
            p.add_argument(f"--no-{f.name.replace('_', '-')}", dest=f.name, action="store_false", help=f"no {h}")
        else:
            p.add_argument(flag, type=type(default) if default is not None else str, default=default, help=h)


def _gen_config(args):
    from difflab.digits.generate import GenerateConfig

    interval = None
    if args.guidance_interval is not None:
        from difflab.sampling import parse_guidance_interval

        interval = parse_guidance_interval(args.guidance_interval, None)
    return GenerateConfig(per_digit=args.per_digit, model=args.model, guidance=args.guidance, steps=args.steps,
                          sampler=args.sampler, eta=args.eta, seed=args.seed, batch_size=args.batch_size,
                          bf16=not args.fp32, guide=args.guide, guidance_interval=interval, karras=args.karras,
                          device=args.device)


def _generate(args):
    from difflab.digits.generate import generate, resolve
    from difflab.models.digits import load_digit_model

    cfg = _gen_config(args)  # checks itself when built: before the model loads
    model, schedule, _ = load_digit_model(cfg.model)
    if cfg.guidance_interval is not None and cfg.guidance_interval[1] >= schedule.num_train_timesteps:
        raise DifflabError(f"--guidance-interval {args.guidance_interval}: timesteps run from 0 to "
                           f"{schedule.num_train_timesteps - 1}")
    if cfg.steps is not None and cfg.steps > schedule.num_train_timesteps:
        raise DifflabError(f"--steps {cfg.steps}: the model has {schedule.num_train_timesteps} training timesteps")
    cfg = resolve(cfg, model)
    t = generate(args.out_dir, model, schedule, cfg, overwrite=args.overwrite)
    print(f"wrote {t['images']} images to {args.out_dir}/{{mnistm,svhn}}/ and grids "
          f"{args.out_dir}/{{mnistm,svhn}}_grid.png in {t['total_s']:.1f} s "
          f"(network {t['network_s']:.1f} s, other {t['other_s']:.1f} s; {cfg.model} model, {cfg.sampler} "
          f"{cfg.steps} steps, guidance {cfg.guidance:g})")


def _eval(args):
    from difflab.digits.evaluate import evaluate, format_results

    res = evaluate(args.out_dir, {"mnistm": args.mnistm_classifier, "svhn": args.svhn_classifier},
                   data_root=args.data_root, device=args.device)
    print(format_results(res))
    print(f"details: {args.out_dir}/eval.json")


def _demo(args):
    _generate(args)
    _eval(argparse.Namespace(out_dir=args.out_dir, mnistm_classifier=None, svhn_classifier=None,
                             data_root=None, device=args.device))
    print(f"outputs: {args.out_dir}/mnistm/, {args.out_dir}/svhn/, grids "
          f"{args.out_dir}/mnistm_grid.png and {args.out_dir}/svhn_grid.png, metrics {args.out_dir}/eval.json")


def _add_generate_args(p, g):
    from difflab.device import add_device_arg
    from difflab.digits.generate import GENERATE_SAMPLERS

    p.add_argument("out_dir", help="output folder: OUT/{mnistm,svhn}/{digit}_{NNN}.png and grids")
    p.add_argument("--model", default=g.model,
                   help="'teacher' (CFG), 'student' (distilled: 4 steps, one pass each, ~10x faster, "
                        "less accurate: docs/RESULTS.md) or a digit model .safetensors (default: %(default)s)")
    p.add_argument("--per-digit", type=int, default=g.per_digit,
                   help="images per digit and domain (default: %(default)s)")
    p.add_argument("--guidance", type=float, default=g.guidance, help="CFG scale w (default: %(default)s)")
    p.add_argument("--steps", type=int, default=g.steps,
                   help="sampler steps (default: the model's own: student 4, teacher 20)")
    p.add_argument("--sampler", choices=GENERATE_SAMPLERS, default=g.sampler,
                   help="teacher's sampler (default: ddim; the student runs the DDIM it was distilled for)")
    p.add_argument("--karras", action="store_true", help="Karras sigmas (dpmpp-2m/unipc)")
    p.add_argument("--guidance-interval", default=None, metavar="LO,HI",
                   help="teacher: guide only for timesteps LO <= t <= HI, one pass elsewhere (default: all)")
    p.add_argument("--eta", type=float, default=g.eta, help="DDIM eta, 0 = deterministic (default: %(default)s)")
    p.add_argument("--seed", type=int, default=g.seed, help="random seed (default: %(default)s)")
    p.add_argument("--batch-size", type=int, default=g.batch_size,
                   help="images per network batch (default: %(default)s)")
    p.add_argument("--fp32", action="store_true", help="run the network in float32 (default bf16 autocast)")
    p.add_argument("--guide", choices=["digit", "both"], default=g.guide,
                   help="what guidance amplifies: the digit only (default) or digit and domain")
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty output folder")
    add_device_arg(p)


def _preview(args):
    from difflab.digits.viz_data import preview

    for path in preview(args.out_dir, data_root=args.data_root, seed=args.seed):
        print(path)


def register(sub: argparse._SubParsersAction) -> None:
    from difflab.device import add_device_arg
    from difflab.digits.generate import GenerateConfig
    from difflab.digits.train import TrainConfig

    d, g = TrainConfig(), GenerateConfig()
    digits = sub.add_parser("digits", help="conditional digit diffusion (MNIST-M + SVHN)")
    dsub = digits.add_subparsers(dest="digits_command", required=True)

    p = dsub.add_parser("train", help="train the conditional DDPM (torchrun-capable)")
    p.add_argument("--out-dir", default=d.out_dir)
    p.add_argument("--resume", default=None, help="'latest' or a checkpoint path")
    p.add_argument("--overwrite", action="store_true",
                   help="start afresh in an --out-dir that holds another run's checkpoint (default: refuse)")
    for name in ("steps", "batch_size", "warmup_steps", "seed", "train_size", "ckpt_every",
                 "num_train_timesteps"):
        p.add_argument(f"--{name.replace('_', '-')}", type=int, default=getattr(d, name))
    for name in ("lr", "ema_decay", "drop_both", "drop_digit", "drop_domain", "grad_clip", "weight_decay"):
        p.add_argument(f"--{name.replace('_', '-')}", type=float, default=getattr(d, name))
    p.add_argument("--schedule", default=d.schedule, choices=["linear", "scaled_linear", "cosine"])
    p.add_argument("--no-bf16", dest="bf16", action="store_false")
    p.add_argument("--data-root", default=None, help="real data folder (default: offline recipes)")
    p.add_argument("--base-channels", type=int, default=d.unet.base_channels)
    p.add_argument("--channel-mults", type=int, nargs="+", default=list(d.unet.channel_mults))
    p.add_argument("--num-res-blocks", type=int, default=d.unet.num_res_blocks)
    p.add_argument("--attention-levels", type=int, nargs="*", default=list(d.unet.attention_levels))
    add_device_arg(p)  # under torchrun each process takes cuda:LOCAL_RANK (docs/scaling.md)
    p.set_defaults(func=_train)

    p = dsub.add_parser("train-classifier", help="train a domain's evaluation classifier")
    p.add_argument("--domain", required=True, choices=["mnistm", "svhn"])
    p.add_argument("--out", default=None)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--train-size", type=int, default=16000, help="synthesised training images")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data-root", default=None)
    add_device_arg(p)
    p.set_defaults(func=_train_classifier)

    p = dsub.add_parser("distill", help="distil the teacher into a few-step guidance-input student (resumable)")
    _add_distill_args(p)
    p.set_defaults(func=_distill)

    p = dsub.add_parser("generate", help="generate N images per digit per domain in the standard layout")
    _add_generate_args(p, g)
    p.set_defaults(func=_generate)

    p = dsub.add_parser("info", help="a digit checkpoint's config, schedule and training record as JSON")
    p.add_argument("--model", default="teacher", help="teacher, student or a .safetensors path (default: %(default)s)")
    p.set_defaults(func=_info)

    p = dsub.add_parser("eval", help="accuracy and Fréchet distance of generated digits")
    p.add_argument("out_dir")
    p.add_argument("--mnistm-classifier", default=None)
    p.add_argument("--svhn-classifier", default=None)
    p.add_argument("--data-root", default=None, help="real data folder for the real-image reference")
    add_device_arg(p)
    p.set_defaults(func=_eval)

    p = sub.add_parser("demo", help="generate + eval with the shipped model (what `make demo` runs)")
    _add_generate_args(p, g)
    p.set_defaults(func=_demo)

    data = sub.add_parser("data", help="digit datasets")
    dasub = data.add_subparsers(dest="data_command", required=True)
    p = dasub.add_parser("preview", help="write a 10x10 grid of each domain")
    p.add_argument("out_dir")
    p.add_argument("--data-root", default=None)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_preview)
