"""`difflab digits ...`, `difflab demo` and `difflab data ...` subcommands. Parsing and printing only.

Settings come from the jobs' config dataclasses through difflab.config_args (their help: digits/flags.py);
torch and the jobs load inside the handlers and `register`.
"""

from __future__ import annotations

import argparse
from dataclasses import replace

from difflab.config_args import add_config_args, config_from_args, option_help
from difflab.errors import DifflabError

SHIPPED_CLASSIFIER = "the shipped one"
# commands that show the sampling process itself (every timestep; guidance from 0 to 7): they run the
# teacher unless --model says otherwise (the student jumps in 4 steps and takes guidance 1-5 only)
STUDIES_THE_PROCESS = ("digits reverse", "digits sweep")


def _train(args):
    from difflab.models.unet import UNetConfig
    from difflab.training.common import ema_warmup, inert_decays
    from difflab.training.config import TrainConfig
    from difflab.training.train import train

    cfg = config_from_args(TrainConfig, args, unet=config_from_args(UNetConfig, args))
    trainer = train(cfg, resume=args.resume, overwrite=args.overwrite)
    if trainer.rank == 0:
        print(f"EMA weights: {cfg.out_dir}/ema.safetensors (step {trainer.step})")
        inert = inert_decays((cfg.ema_decay, *cfg.extra_ema_decays), trainer.step)
        if inert:  # measured: the one-hour runs' 0.999 was this (docs/RESULTS.md §9)
            print(f"note: EMA decay {', '.join(f'{d:g}' for d in inert)} never took effect in {trainer.step} steps: "
                  f"the warm-up cap (1 + step) / (10 + step) stayed below it ({ema_warmup(trainer.step - 1):.5f} "
                  f"at the end), so those weights are the warm-up schedule's, as with any higher decay")


def _train_classifier(args):
    from difflab.digits.classify import ClassifierTrainConfig, train_classifier

    cfg = config_from_args(ClassifierTrainConfig, args)
    _, acc = train_classifier(cfg)
    print(f"{cfg.domain} classifier: val acc = {acc:.4f} -> {cfg.out_path()}")


def _distill(args):
    from difflab.training.distill import DistillConfig, distill

    r = distill(config_from_args(DistillConfig, args))
    print(f"student: {r.student_path} (teacher trajectories {r.wall_s['trajectories_s']:.0f} s, "
          f"student training {r.wall_s['student_s']:.0f} s in this run)")


def _generate_config(args, command: str | None = None):
    """The GenerateConfig of the flags; it checks itself when built, before any model loads. The commands
    other than `digits generate` (named by `command`) draw the shipped domains only: --concept refused."""
    from difflab.digits.generate import GenerateConfig

    cfg = config_from_args(GenerateConfig, args)
    if cfg.concepts and command:
        raise DifflabError(f"--concept: `difflab {command}` draws the shipped domains and digits only; use "
                           "`difflab digits generate OUT --concept CONCEPT_DIR`")
    if cfg.model is None and command in STUDIES_THE_PROCESS:
        cfg = replace(cfg, model="teacher")
    return cfg


def _load_model(cfg):
    """(model, schedule) that `cfg.model` names, with the settings bounded by its T checked."""
    from difflab.models.digits import load_digit_model

    model, schedule, _ = load_digit_model(cfg.model_name())
    T = schedule.num_train_timesteps
    if cfg.guidance_interval is not None and cfg.guidance_interval[1] >= T:
        lo, hi = cfg.guidance_interval
        raise DifflabError(f"--guidance-interval {lo},{hi}: timesteps run from 0 to {T - 1}")
    if cfg.steps is not None and cfg.steps > T:
        raise DifflabError(f"--steps {cfg.steps}: the model has {T} training timesteps")
    return model, schedule


def _generate(args, command: str | None = None):
    from difflab.digits.generate import generate, resolve

    cfg = _generate_config(args, command)
    if cfg.concepts:  # a broken concept folder is refused before the model loads; its files are read once
        from difflab.concepts.concept import apply_concepts, load_concepts

        concepts = load_concepts(cfg.concepts)
    model, schedule = _load_model(cfg)
    if cfg.concepts:  # generate() takes a model that carries exactly these concepts as it is
        model = apply_concepts(model, concepts)
    cfg = resolve(cfg, model)
    t = generate(args.out_dir, model, schedule, cfg, overwrite=args.overwrite)
    where = (f"{args.out_dir}/ (concepts: {', '.join(cfg.concepts)})" if cfg.concepts else
             f"{args.out_dir}/{{mnistm,svhn}}/ and grids {args.out_dir}/{{mnistm,svhn}}_grid.png")
    print(f"wrote {t['images']} images to {where} in {t['total_s']:.1f} s "
          f"(network {t['network_s']:.1f} s, other {t['other_s']:.1f} s; {cfg.model_name()} model, {cfg.sampler} "
          f"{cfg.steps} steps, guidance {cfg.guidance:g} on {cfg.guide})")


def _personalize(args):
    from difflab.concepts.personalize import PersonalizeConfig, personalize

    r = personalize(config_from_args(PersonalizeConfig, args))
    acc = r.meta.get("retained_acc")
    kept = f"; retained accuracy MNIST-M {acc['mnistm']:.3f}, SVHN {acc['svhn']:.3f}" if acc else ""
    print(f"concept {r.meta['name']!r} ({r.meta['kind']}, {r.meta['method']}, {r.meta['steps']} steps in "
          f"{r.meta['wall_s']:.0f} s){kept} -> {r.path}")


def _classifiers(args) -> dict:
    return {"mnistm": args.mnistm_classifier, "svhn": args.svhn_classifier}


def _evaluate(out_dir, classifiers: dict, data_root, device: str) -> None:
    from difflab.digits.evaluate import evaluate, format_results

    res = evaluate(out_dir, classifiers, data_root=data_root, device=device)
    print(format_results(res))
    print(f"details: {out_dir}/eval.json")


def _eval(args):
    _evaluate(args.out_dir, _classifiers(args), args.data_root, args.device)


def _demo(args):
    _generate(args, "demo")
    _evaluate(args.out_dir, {"mnistm": None, "svhn": None}, None, args.device)
    print(f"outputs: {args.out_dir}/mnistm/, {args.out_dir}/svhn/, grids "
          f"{args.out_dir}/mnistm_grid.png and {args.out_dir}/svhn_grid.png, metrics {args.out_dir}/eval.json")


def _reverse(args):
    from difflab.checks import check_digit
    from difflab.digits.reverse import check_output_png, reverse_figure
    from difflab.viz import save_image

    out = check_output_png(args.out_png, args.overwrite)
    cfg = _generate_config(args, "digits reverse")
    check_digit("digit", args.digit)
    model, schedule = _load_model(cfg)
    domains = ("mnistm", "svhn") if args.domain == "both" else (args.domain,)
    fig = reverse_figure(model, schedule, cfg, args.digit, domains, args.timesteps)
    save_image(fig.image, out)
    print(f"reverse process of digit {args.digit} ({', '.join(domains)}) at t = "
          f"{', '.join(map(str, fig.levels))} -> {out}")


def _sweep(args):
    from difflab.digits.sweep import parse_scales, sweep

    scales = parse_scales(args.scales)  # refuse bad scales before loading anything
    cfg = _generate_config(args, "digits sweep")
    model, schedule = _load_model(cfg)
    rows = sweep(args.out_dir, model, schedule, cfg, scales, _classifiers(args), args.data_root,
                 overwrite=args.overwrite)
    print(f"{'w':>5} {'MNIST-M acc':>12} {'SVHN acc':>9} {'mean':>7} {'MNIST-M FD':>11} {'SVHN FD':>8}")
    for r in rows:
        print(f"{r['guidance']:>5g} {r['mnistm_acc']:>12.4f} {r['svhn_acc']:>9.4f} {r['mean_acc']:>7.4f} "
              f"{r['mnistm_fd']:>11.3f} {r['svhn_fd']:>8.3f}")
    print(f"Fréchet real vs real (same sample sizes): MNIST-M {rows[0]['mnistm_fd_real']:.3f}, "
          f"SVHN {rows[0]['svhn_fd_real']:.3f}")
    print(f"wrote {args.out_dir}/sweep.csv, sweep.png, strip.png and guidance_*/")


def _info(args):
    import json

    from difflab.digits.info import checkpoint_info

    print(json.dumps(checkpoint_info(args.model), indent=2))


def _preview(args):
    from difflab.digits.viz_data import preview

    for path in preview(args.out_dir, data_root=args.data_root, seed=args.seed):
        print(path)


def add_classifier_args(p) -> None:
    """The classifiers and real data that generated digits are judged with (`digits eval`, `sweep`, `report`)."""
    p.add_argument("--mnistm-classifier", default=None,
                   help=option_help("MNIST-M evaluation classifier .safetensors", SHIPPED_CLASSIFIER))
    p.add_argument("--svhn-classifier", default=None,
                   help=option_help("SVHN evaluation classifier .safetensors", SHIPPED_CLASSIFIER))
    p.add_argument("--data-root", default=None,
                   help=option_help("real data folder for the real-image reference", "offline recipes"))


def _add_generate(p, what: str, skip=(), defaults=None) -> None:
    """The one set of generate flags (GenerateConfig's) for `digits generate/reverse/sweep` and `demo`."""
    from difflab.digits import flags
    from difflab.digits.generate import GenerateConfig

    add_config_args(p, GenerateConfig, flags.GENERATE, skip=(*skip, "concepts"), defaults=defaults)
    if "concepts" not in skip:  # repeatable, so not through add_config_args (its tuple flags take one list)
        spec = flags.GENERATE["concepts"]
        p.add_argument(spec.flag, dest="concepts", action="append", default=[], metavar=spec.metavar,
                       help=option_help(spec.help, spec.shown))
    p.add_argument("--overwrite", action="store_true", help=f"replace an existing {what}")


def _add_training(dsub) -> None:
    from difflab.digits import flags
    from difflab.digits.classify import ClassifierTrainConfig
    from difflab.models.unet import UNetConfig
    from difflab.training.config import TrainConfig
    from difflab.training.distill import DistillConfig

    p = dsub.add_parser("train", help="train the conditional DDPM (torchrun-capable)")
    add_config_args(p, TrainConfig, flags.TRAIN, skip=flags.TRAIN_SKIP)
    add_config_args(p.add_argument_group("network"), UNetConfig, flags.UNET, skip=flags.UNET_SKIP)
    p.add_argument("--resume", default=None,
                   help=option_help("'latest' or a checkpoint path to continue from", "start afresh"))
    p.add_argument("--overwrite", action="store_true",
                   help="start afresh in an --out-dir that holds another run's checkpoint (default: refuse)")
    p.set_defaults(func=_train)

    p = dsub.add_parser("train-classifier", help="train a domain's evaluation classifier")
    add_config_args(p, ClassifierTrainConfig, flags.CLASSIFIER)
    p.set_defaults(func=_train_classifier)

    p = dsub.add_parser("distill", help="distil the teacher into a few-step guidance-input student (resumable)")
    add_config_args(p, DistillConfig, flags.DISTILL)
    p.set_defaults(func=_distill)

    from difflab.concepts.personalize import PersonalizeConfig

    p = dsub.add_parser("personalize", help="teach the digit model a new style or symbol from a few images "
                                            "(textual inversion, LoRA or fine-tuning)",
                        description="Writes a concept folder for `difflab digits generate OUT --concept "
                                    "CONCEPT_DIR` (docs/personalize-digits.md).")
    add_config_args(p, PersonalizeConfig, flags.PERSONALIZE)
    p.set_defaults(func=_personalize)


def _add_sampling(sub, dsub) -> None:
    from difflab.data import DOMAINS
    from difflab.digits.reverse import DEFAULT_TIMESTEPS
    from difflab.digits.sweep import DEFAULT_SCALES, SWEEP_PER_DIGIT

    p = dsub.add_parser("generate", help="generate N images per digit per domain in the standard layout")
    p.add_argument("out_dir", help="output folder: OUT/{mnistm,svhn}/{digit}_{NNN}.png and grids")
    _add_generate(p, "non-empty output folder")
    p.set_defaults(func=_generate)

    p = sub.add_parser("demo", help="generate + eval with the shipped model (what `make demo` runs)")
    p.add_argument("out_dir", help="output folder: images, grids and eval.json")
    _add_generate(p, "non-empty output folder")
    p.set_defaults(func=_demo)

    p = dsub.add_parser("reverse", help="x_t and predicted x_0 along the trajectory of one generated digit",
                        description="Replays `digits generate` for image {digit}_001 with the same seed and "
                                    "settings; the last frame equals that PNG.")
    p.add_argument("out_png", metavar="OUT.png", help="the figure to write")
    p.add_argument("--digit", type=int, default=0, help=option_help("the digit whose image {digit}_001 to replay", "0"))
    p.add_argument("--domain", choices=[*DOMAINS, "both"], default="both",
                   help=option_help("the domain(s) to draw, one pair of rows each", "both"))
    ts = ",".join(map(str, DEFAULT_TIMESTEPS))
    p.add_argument("--timesteps", default=ts, help=option_help("comma-separated t in [0, T], sorted", ts))
    _add_generate(p, "OUT.png")
    p.set_defaults(func=_reverse)

    p = dsub.add_parser("sweep", help="accuracy and Fréchet distance against the guidance scale")
    p.add_argument("out_dir", metavar="OUT_DIR", help="output folder: guidance_{w}/, sweep.csv, sweep.png, strip.png")
    scales = ",".join(f"{w:g}" for w in DEFAULT_SCALES)
    p.add_argument("--guidance", dest="scales", default=scales,
                   help=option_help("comma-separated guidance scales in [0, 100], each generated and evaluated",
                                    scales))
    _add_generate(p, "non-empty output folder", skip=("guidance",), defaults={"per_digit": SWEEP_PER_DIGIT})
    add_classifier_args(p)
    p.set_defaults(func=_sweep)


def register(sub: argparse._SubParsersAction) -> None:
    from difflab.device import add_device_arg

    digits = sub.add_parser("digits", help="conditional digit diffusion (MNIST-M + SVHN)")
    dsub = digits.add_subparsers(dest="digits_command", required=True)
    _add_training(dsub)
    _add_sampling(sub, dsub)

    p = dsub.add_parser("info", help="a digit checkpoint's config, schedule and training record as JSON")
    p.add_argument("--model", default="teacher", help=option_help("teacher, student or a .safetensors path", "teacher"))
    p.set_defaults(func=_info)

    p = dsub.add_parser("eval", help="accuracy and Fréchet distance of generated digits")
    p.add_argument("out_dir", help="a `digits generate` folder; eval.json is written into it")
    add_classifier_args(p)
    add_device_arg(p)
    p.set_defaults(func=_eval)

    data = sub.add_parser("data", help="digit datasets")
    dasub = data.add_subparsers(dest="data_command", required=True)
    p = dasub.add_parser("preview", help="write a 10x10 grid of each domain")
    p.add_argument("out_dir", help="output folder for {domain}_preview.png")
    p.add_argument("--data-root", default=None, help=option_help("real data folder", "offline recipes"))
    p.add_argument("--seed", type=int, default=0, help=option_help("seed of the synthesised images", "0"))
    p.set_defaults(func=_preview)
