"""`difflab clip zeroshot`: CLIP zero-shot accuracy of a labelled image folder, with a report.

Only light imports here: torch/transformers load inside the handler.
"""

from __future__ import annotations

import argparse

from difflab.clip.config import ZeroShotConfig
from difflab.config_args import Flag, add_config_args
from difflab.config_args import config_from_args as _config_from_args


def _words() -> dict:
    """What each ZeroShotConfig field means on the command line."""
    from difflab.device import DEVICE_HELP  # here: it imports torch

    return {
        "images_dir": Flag("labelled images: {class_id}_{image_id}.png files (+ --labels) or one sub-folder per "
                           "class", positional=True, metavar="IMAGES_DIR"),
        "model": Flag("transformers CLIPModel folder (or a Hub id already in the local HF cache)", metavar="CLIP_DIR"),
        "labels": Flag("JSON {class_id: name}; required for {class_id}_{image_id} file names",
                       metavar="ID2LABEL_JSON", shown="class names from the sub-folders"),
        "templates": Flag("one template, our ensemble, or a file with one template per line using {}",
                          metavar="single|ensemble|FILE"),
        "batch_size": "images per CLIP batch",
        "out": Flag("write report.json, predictions.csv, cases.png, summary.txt here", metavar="REPORT_DIR",
                    shown="print the summary only"),
        "overwrite": "replace a non-empty REPORT_DIR",
        "device": DEVICE_HELP,
        "top_k": "k of top-k accuracy",
        "n_cases": Flag("successes and failures to show", flag="--cases"),
    }


def register(subparsers) -> None:
    clip = subparsers.add_parser("clip", help="CLIP zero-shot classification and scores")
    jobs = clip.add_subparsers(dest="clip_command", required=True)
    p = jobs.add_parser(
        "zeroshot", help="zero-shot accuracy of a labelled image folder",
        description="Classify IMAGES_DIR with CLIP prompts and report top-1/top-k accuracy, per-class "
                    "accuracy, confused pairs and example cases. Layouts: {class_id}_{image_id}.png files "
                    "+ --labels id2label.json, or one sub-folder per class. Offline only.")
    add_config_args(p, ZeroShotConfig, _words())
    p.set_defaults(func=zeroshot_command)


def config_from_args(args: argparse.Namespace) -> ZeroShotConfig:
    """The ZeroShotConfig of parsed `clip zeroshot` flags (it checks itself)."""
    return _config_from_args(ZeroShotConfig, args)


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
