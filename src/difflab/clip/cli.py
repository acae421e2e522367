"""`difflab clip zeroshot`: CLIP zero-shot accuracy of a labelled image folder, with a report.

Only light imports here: torch/transformers load inside the handler.
"""

from __future__ import annotations

import argparse
import dataclasses

from difflab.clip.config import ZeroShotConfig


def register(subparsers) -> None:
    clip = subparsers.add_parser("clip", help="CLIP zero-shot classification and scores")
    jobs = clip.add_subparsers(dest="clip_command", required=True)
    d = ZeroShotConfig("", "")
    p = jobs.add_parser(
        "zeroshot", help="zero-shot accuracy of a labelled image folder",
        description="Classify IMAGES_DIR with CLIP prompts and report top-1/top-k accuracy, per-class "
                    "accuracy, confused pairs and example cases. Layouts: {class_id}_{image_id}.png files "
                    "+ --labels id2label.json, or one sub-folder per class. Offline only.")
    p.add_argument("images_dir", metavar="IMAGES_DIR")
    p.add_argument("--model", required=True, metavar="CLIP_DIR",
                   help="transformers CLIPModel folder (or a Hub id already in the local HF cache)")
    p.add_argument("--labels", default=d.labels, metavar="ID2LABEL_JSON",
                   help="JSON {class_id: name}; required for {class_id}_{image_id} file names")
    p.add_argument("--templates", default=d.templates, metavar="single|ensemble|FILE",
                   help="one template, our ensemble, or a file with one template per line using {} "
                        f"(default {d.templates})")
    p.add_argument("--batch-size", type=int, default=d.batch_size, help=f"default {d.batch_size}")
    p.add_argument("--out", default=d.out, metavar="REPORT_DIR",
                   help="write report.json, predictions.csv, cases.png, summary.txt here")
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty REPORT_DIR")
    from difflab.device import add_device_arg

    add_device_arg(p, d.device)
    p.add_argument("--top-k", type=int, default=d.top_k, help=f"k of top-k accuracy (default {d.top_k})")
    p.add_argument("--cases", dest="n_cases", type=int, default=d.n_cases,
                   help=f"successes and failures to show (default {d.n_cases})")
    p.set_defaults(func=zeroshot_command)


def config_from_args(args: argparse.Namespace) -> ZeroShotConfig:
    names = {f.name for f in dataclasses.fields(ZeroShotConfig)}
    return ZeroShotConfig(**{k: v for k, v in vars(args).items() if k in names})


def zeroshot_command(args: argparse.Namespace) -> int:
    import contextlib
    from pathlib import Path

    from difflab.clip.report import format_summary, write_report
    from difflab.clip.zeroshot import run_zeroshot, summarise
    from difflab.io import staged_output_dir

    config = config_from_args(args)
    config.validate()
    # the output folder is checked (and locked) before minutes of inference, built aside and moved into
    # place only when the report is complete: a failed run leaves no folder and keeps an old one
    staged = staged_output_dir(config.out, config.overwrite) if config.out is not None else contextlib.nullcontext()
    with staged as stage:
        result = run_zeroshot(config)
        summary = summarise(result, top_k=config.top_k, n_cases=config.n_cases)
        print(format_summary(summary))
        if stage is not None:
            names = list(write_report(result, summary, stage))
    if config.out is not None:
        print("wrote " + ", ".join(str(Path(config.out) / n) for n in names))
    return 0
