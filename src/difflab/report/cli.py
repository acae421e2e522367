"""`difflab report OUT_DIR`. Parsing and printing only; torch and the jobs load inside the handler.

The two digit commands the report is built from, `digits reverse` and `digits sweep`, are registered by
difflab.digits.cli with the rest of `digits`.
"""

from __future__ import annotations

import argparse

from difflab.config_args import Flag, add_config_args, option_help
from difflab.config_args import config_from_args as _config_from_args
from difflab.report.config import ReportConfig


def _words() -> dict:
    """What each ReportConfig field means on the command line (the digit settings read as generate's)."""
    from difflab.device import DEVICE_HELP
    from difflab.digits.flags import GENERATE

    return {
        **{k: GENERATE[k] for k in ("per_digit", "seed", "batch_size", "bf16")},
        "guidance": "classifier-free guidance scale of the grids, the table and the reverse process",
        "steps": "teacher DDIM steps (grids, reverse process, sweep)",
        "digit": "the digit of the reverse process and of the DDIM figures",
        "timesteps": Flag("the reverse process's t in [0, T], sorted", comma=True),
        "sweep_scales": Flag("guidance scales of the sweep", comma=True),
        "sweep_per_digit": "images per digit and domain at each scale of the sweep",
        "ddim_steps": "DDIM steps of the DDIM figures (eta grid, interpolation, inversion)",
        "etas": Flag("rows of the eta grid", comma=True),
        "eta_columns": "noises (columns) of the eta grid",
        "interp_num": "images of the slerp/lerp strips",
        "invert_count": "generated images inverted to noise and re-sampled (at most --per-digit)",
        "invert_guidance": "guidance scale of inversion and re-sampling (1: the conditional model)",
        "device": DEVICE_HELP,
    }


def config_from_args(args: argparse.Namespace) -> ReportConfig:
    """The ReportConfig of parsed `difflab report` flags (it checks itself)."""
    return _config_from_args(ReportConfig, args)


def _report(args):
    from difflab.report.run import run_report

    cfg = config_from_args(args)
    info = run_report(args.out_dir, cfg, args.model, {"mnistm": args.mnistm_classifier, "svhn": args.svhn_classifier},
                      args.data_root, args.clip, args.zeroshot, args.labels, args.ti, overwrite=args.overwrite,
                      student_path=args.student)
    print(f"report: {args.out_dir}/index.html ({info['total_s']:.0f} s: "
          + ", ".join(f"{k} {s:.0f} s" for k, s in info["sections"].items()) + ")")


def register(sub: argparse._SubParsersAction) -> None:
    from difflab.digits.cli import add_classifier_args

    p = sub.add_parser("report", help="run the experiments and write OUT_DIR/index.html",
                       description="Digits grids and accuracy, reverse process, guidance sweep, few-step "
                                   "sampling (teacher solvers and the distilled student), DDIM eta grid, "
                                   "slerp vs lerp and inversion on the digit model; optionally CLIP zero-shot "
                                   "and textual-inversion results. One self-contained HTML page.")
    p.add_argument("out_dir", metavar="OUT_DIR", help="output folder: index.html and every figure's files")
    add_config_args(p, ReportConfig, _words())
    p.add_argument("--model", default=None, help=option_help("digit model .safetensors", "the shipped teacher"))
    p.add_argument("--student", default="student",
                   help=option_help("distilled student for the few-step section: 'student' (the shipped one) or "
                                    "a .safetensors; if the file is missing the section shows the teacher only",
                                    "student"))
    add_classifier_args(p)
    p.add_argument("--clip", default=None, metavar="CLIP_DIR",
                   help=option_help("CLIP model folder, for the zero-shot section", "no zero-shot section"))
    p.add_argument("--zeroshot", default=None, metavar="IMAGES",
                   help=option_help("labelled images for zero-shot (with --clip)", "none"))
    p.add_argument("--labels", default=None, metavar="ID2LABEL_JSON",
                   help=option_help("class names for --zeroshot", "none"))
    p.add_argument("--ti", default=None, metavar="TI_OUT",
                   help=option_help("a `difflab ti generate` folder (+ scores.json)", "no textual-inversion section"))
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty OUT_DIR")
    p.set_defaults(func=_report)
