"""`difflab report OUT_DIR`, and the two digit commands it is built from: `difflab digits reverse` and
`difflab digits sweep` (added to the `digits` parser that difflab.digits.cli registered before us).

Parsing and printing only; torch and the jobs load inside the handlers.
"""

from __future__ import annotations

import argparse
from dataclasses import fields

from difflab.errors import DifflabError
from difflab.report.config import ReportConfig

LIST_FIELDS = {"timesteps": int, "sweep_scales": float, "etas": float}


def _numbers(text: str, kind, flag: str) -> tuple:
    try:
        return tuple(kind(s.strip()) for s in text.split(","))
    except ValueError:
        raise DifflabError(f"{flag}: expected comma-separated numbers, got {text!r}") from None


def _gen_config(args):
    from difflab.digits.generate import GenerateConfig

    return GenerateConfig(per_digit=args.per_digit, model=args.model, guidance=getattr(args, "guidance_scale", 0.0),
                          steps=args.steps, sampler=args.sampler, eta=args.eta, seed=args.seed,
                          batch_size=args.batch_size, bf16=not args.fp32, device=args.device)


def _reverse(args):
    from difflab.checks import check_digit
    from difflab.digits.reverse import check_output_png, reverse_figure
    from difflab.models.digits import load_digit_model
    from difflab.viz import save_image

    out = check_output_png(args.out_png, args.overwrite)
    cfg = _gen_config(args)  # checks itself when built
    check_digit("digit", args.digit)
    model, schedule, _ = load_digit_model(args.model)
    domains = ("mnistm", "svhn") if args.domain == "both" else (args.domain,)
    fig = reverse_figure(model, schedule, cfg, args.digit, domains, args.timesteps)
    save_image(fig.image, out)
    print(f"reverse process of digit {args.digit} ({', '.join(domains)}) at t = "
          f"{', '.join(map(str, fig.levels))} -> {out}")


def _sweep(args):
    from difflab.digits.sweep import parse_scales, sweep
    from difflab.models.digits import load_digit_model

    scales = parse_scales(args.scales)  # refuse bad scales before loading anything
    cfg = _gen_config(args)  # checks itself when built
    model, schedule, _ = load_digit_model(args.model)
    rows = sweep(args.out_dir, model, schedule, cfg, scales,
                 {"mnistm": args.mnistm_classifier, "svhn": args.svhn_classifier}, args.data_root,
                 overwrite=args.overwrite)
    print(f"{'w':>5} {'MNIST-M acc':>12} {'SVHN acc':>9} {'mean':>7} {'MNIST-M FD':>11} {'SVHN FD':>8}")
    for r in rows:
        print(f"{r['guidance']:>5g} {r['mnistm_acc']:>12.4f} {r['svhn_acc']:>9.4f} {r['mean_acc']:>7.4f} "
              f"{r['mnistm_fd']:>11.3f} {r['svhn_fd']:>8.3f}")
    print(f"Fréchet real vs real (same sample sizes): MNIST-M {rows[0]['mnistm_fd_real']:.3f}, "
          f"SVHN {rows[0]['svhn_fd_real']:.3f}")
    print(f"wrote {args.out_dir}/sweep.csv, sweep.png, strip.png and guidance_*/")


def config_from_args(args) -> ReportConfig:
    values = {}
    for f in fields(ReportConfig):
        v = getattr(args, f.name)
        if f.name in LIST_FIELDS:
            v = _numbers(v, LIST_FIELDS[f.name], f"--{f.name.replace('_', '-')}")
        values[f.name] = v
    return ReportConfig(**values)


def _report(args):
    from difflab.report.run import run_report

    cfg = config_from_args(args)
    info = run_report(args.out_dir, cfg, args.model, {"mnistm": args.mnistm_classifier, "svhn": args.svhn_classifier},
                      args.data_root, args.clip, args.zeroshot, args.labels, args.ti, overwrite=args.overwrite,
                      student_path=args.student)
    print(f"report: {args.out_dir}/index.html ({info['total_s']:.0f} s: "
          + ", ".join(f"{k} {s:.0f} s" for k, s in info["sections"].items()) + ")")


def _add_gen(p, g, per_digit: int):
    from difflab.device import add_device_arg
    from difflab.digits.generate import GENERATE_SAMPLERS

    add_device_arg(p)
    p.add_argument("--model", default="teacher", help="teacher, student or a digit model .safetensors "
                   "(default: %(default)s)")
    p.add_argument("--per-digit", type=int, default=per_digit, help=f"images per digit and domain ({per_digit})")
    p.add_argument("--steps", type=int, default=g.steps)
    p.add_argument("--sampler", choices=list(GENERATE_SAMPLERS), default=g.sampler,
                   help="default: ddim (a student: the DDIM it was distilled for)")
    p.add_argument("--eta", type=float, default=g.eta)
    p.add_argument("--seed", type=int, default=g.seed)
    p.add_argument("--batch-size", type=int, default=g.batch_size, help="as used by `digits generate`")
    p.add_argument("--fp32", action="store_true", help="run the network in float32 (default bf16 autocast)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output")


def _classifier_args(p):
    p.add_argument("--mnistm-classifier", default=None, help="default: the shipped one")
    p.add_argument("--svhn-classifier", default=None, help="default: the shipped one")
    p.add_argument("--data-root", default=None, help="real data folder for the real-image reference")


def _digits_subparsers(sub) -> argparse._SubParsersAction | None:
    digits = sub.choices.get("digits")
    if digits is None:
        return None
    return next((a for a in digits._actions if isinstance(a, argparse._SubParsersAction)), None)


def register(sub: argparse._SubParsersAction) -> None:
    from difflab.digits.generate import GenerateConfig
    from difflab.digits.sweep import DEFAULT_SCALES, SWEEP_PER_DIGIT

    g, r = GenerateConfig(), ReportConfig()
    dsub = _digits_subparsers(sub)
    if dsub is not None:
        p = dsub.add_parser("reverse", help="x_t and predicted x_0 along the trajectory of one generated digit",
                            description="Replays `digits generate` for image {digit}_001 with the same seed and "
                                        "settings; the last frame equals that PNG.")
        p.add_argument("out_png", metavar="OUT.png")
        p.add_argument("--digit", type=int, default=0)
        p.add_argument("--domain", choices=["mnistm", "svhn", "both"], default="both")
        p.add_argument("--timesteps", default=",".join(map(str, r.timesteps)),
                       help="comma-separated t in [0, T], sorted (default %(default)s)")
        p.add_argument("--guidance", dest="guidance_scale", type=float, default=g.guidance)
        _add_gen(p, g, g.per_digit)
        p.set_defaults(func=_reverse)

        p = dsub.add_parser("sweep", help="accuracy and Fréchet distance against the guidance scale")
        p.add_argument("out_dir", metavar="OUT_DIR")
        p.add_argument("--guidance", dest="scales", default=",".join(f"{w:g}" for w in DEFAULT_SCALES),
                       help="comma-separated scales >= 0 (default %(default)s)")
        _add_gen(p, g, SWEEP_PER_DIGIT)
        _classifier_args(p)
        p.set_defaults(func=_sweep)

    p = sub.add_parser("report", help="run the experiments and write OUT_DIR/index.html",
                       description="Digits grids and accuracy, reverse process, guidance sweep, few-step "
                                   "sampling (teacher solvers and the distilled student), DDIM eta grid, "
                                   "slerp vs lerp and inversion on the digit model; optionally CLIP zero-shot "
                                   "and textual-inversion results. One self-contained HTML page.")
    p.add_argument("out_dir", metavar="OUT_DIR")
    for f in fields(ReportConfig):
        flag, default = f"--{f.name.replace('_', '-')}", getattr(r, f.name)
        if f.name == "bf16":
            p.add_argument("--fp32", dest="bf16", action="store_false", help="network in float32 (default bf16)")
        elif f.name in LIST_FIELDS:
            p.add_argument(flag, default=",".join(f"{x:g}" for x in default), help="comma-separated (%(default)s)")
        else:
            p.add_argument(flag, type=type(default), default=default, help="default %(default)s")
    p.add_argument("--model", default=None, help="digit model .safetensors (default: the shipped one)")
    p.add_argument("--student", default="student", help="distilled student for the few-step section: 'student' "
                   "(the shipped one) or a .safetensors; if the file is missing the section shows the teacher only")
    _classifier_args(p)
    p.add_argument("--clip", default=None, metavar="CLIP_DIR", help="CLIP model folder, for the zero-shot section")
    p.add_argument("--zeroshot", default=None, metavar="IMAGES", help="labelled images for zero-shot (with --clip)")
    p.add_argument("--labels", default=None, metavar="ID2LABEL_JSON", help="class names for --zeroshot")
    p.add_argument("--ti", default=None, metavar="TI_OUT", help="a `difflab ti generate` folder (+ scores.json)")
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty OUT_DIR")
    p.set_defaults(func=_report)
