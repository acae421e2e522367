"""`difflab ti train|generate|score|compose|export-a1111|import-a1111`: textual inversion for SD v1.x.

Only light imports at module level: diffusers/transformers/torch load inside the handlers.
"""

from __future__ import annotations

from pathlib import Path

from difflab.config_args import Flag, add_config_args, config_from_args, option_help
from difflab.personalize.config import ComposeConfig, GenerateConfig, TrainConfig

NONE = "none"
# what each field of the configs in personalize/config.py means on the command line
TRAIN_WORDS = {
    "token": Flag("new token, e.g. '<new1>' (must not be in the vocabulary)", required=True),
    "init_word": Flag("existing word to start from, e.g. dog", required=True),
    "vectors": "vectors per token (multi-vector tokens expand to <tok> <tok>_1 ...)",
    "what": Flag("object or style: which caption templates to train with", choices=("object", "style")),
    "steps": "optimizer steps",
    "lr": "AdamW learning rate (not scaled by batch size)",
    "weight_decay": "AdamW weight decay of the new embedding rows",
    "resolution": "training image size in pixels (multiple of 8; SD v1: 512)",
    "batch_size": "photos per micro-batch",
    "grad_accum": "micro-batches per optimizer step",
    "seed": "random seed",
    "flip": "probability of training on the mirrored photo",
    "validate_every": "write validation images every N steps (0: never)",
    "num_validation": "validation images each time",
    "validation_steps": "DDIM steps of the validation images",
    "checkpoint_every": "steps between checkpoints (OUT/checkpoint.safetensors)",
}
_SAMPLING = {
    "steps": "DDIM steps",
    "guidance": "classifier-free guidance scale",
    "seed": "random seed",
    "size": Flag("image size in pixels (a multiple of 8)", shown="the model's own"),
}
GENERATE_WORDS = {
    **_SAMPLING,
    "per_prompt": "images per prompt",
    "seed": "random seed: each image's seed derives from it, the concept, the prompt and the image index",
    "batch_size": "images per pipeline call",
}
COMPOSE_WORDS = {
    **_SAMPLING,
    "seed": "seed of the first image (image k uses seed + k)",
    "num": "images (seeds seed..seed+num-1)",
    "feather": "mask blur sigma in latent pixels",
    "base_weight": "share of the whole-prompt path everywhere (0: only where no mask covers)",
    "negative_prompt": Flag("negative prompt of every path", shown="empty"),
    "with_paths": "also save each region prompt alone with the same noise, for comparison",
}


def _add_model_args(p) -> None:
    p.add_argument("--model", required=True, metavar="SD",
                   help="diffusers SD v1.x folder, or an original .ckpt/.safetensors with --original-config "
                        "(required)")
    p.add_argument("--original-config", default=None, metavar="YAML",
                   help=option_help("v1-inference.yaml for a single-file checkpoint (converted offline)",
                                    "none: --model is a diffusers folder"))
    p.add_argument("--config-dir", default=None, metavar="DIR",
                   help=option_help("diffusers-layout config folder for a single-file checkpoint", "SD v1's"))
    from difflab.device import add_device_arg

    add_device_arg(p)


def _train(args) -> int:
    from difflab.personalize.train import train

    cfg = config_from_args(TrainConfig, args)
    train(args.model, args.images, args.out, cfg, resume=args.resume, overwrite=args.overwrite,
          device=args.device, original_config=args.original_config, config_dir=args.config_dir)
    print(f"{Path(args.out) / 'learned_embeds.safetensors'} ({cfg.token}: {cfg.vectors} vector(s))")
    return 0


def _generate(args) -> int:
    from difflab.personalize.generate import generate

    paths = generate(args.prompts, args.out, args.model, args.embeds, config_from_args(GenerateConfig, args),
                     overwrite=args.overwrite, resume=args.resume, device=args.device,
                     original_config=args.original_config, config_dir=args.config_dir)
    print(f"{len(paths)} images in {args.out}")
    return 0


def _score(args) -> int:
    from difflab.personalize.score import score

    _, text = score(args.prompts, args.out, args.concepts, args.clip, report=args.report, device=args.device)
    print(text)
    return 0


def _compose(args) -> int:
    from difflab.personalize.compose_cli import run_compose

    cfg = config_from_args(ComposeConfig, args)  # checks itself: before the model loads
    for path in run_compose(args.out, args.model, args.embeds, args.prompt, args.region, cfg,
                            overwrite=args.overwrite, device=args.device, original_config=args.original_config,
                            config_dir=args.config_dir):
        print(path)
    return 0


def _export(args) -> int:
    from difflab.personalize.embeddings import export_a1111

    print(export_a1111(args.src, args.dst, token=args.token))
    return 0


def _import(args) -> int:
    from difflab.personalize.embeddings import import_a1111

    print(import_a1111(args.src, args.dst, token=args.token))
    return 0


def _add_train(jobs) -> None:
    p = jobs.add_parser("train", help="learn a new token from a few photos",
                        description="Train the embedding of --token on the photos in --images; writes "
                                    "OUT/learned_embeds.safetensors (diffusers format).")
    p.add_argument("out", metavar="OUT", help="output folder: learned_embeds.safetensors, checkpoints, validation/")
    _add_model_args(p)
    p.add_argument("--images", required=True, metavar="DIR", help="folder with the concept's photos (required)")
    add_config_args(p, TrainConfig, TRAIN_WORDS)
    p.add_argument("--resume", default=None, metavar="latest|CKPT",
                   help=option_help("continue from OUT/checkpoint.safetensors (latest) or a given checkpoint",
                                    "start afresh"))
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty OUT")
    p.set_defaults(func=_train)


def _add_generate(jobs) -> None:
    p = jobs.add_parser("generate", help="images for every prompt of a PROMPTS.json")
    p.add_argument("prompts", metavar="PROMPTS.json", help="the prompts, per concept (docs/textual_inversion.md)")
    p.add_argument("out", metavar="OUT", help="output folder: OUT/<key>/<prompt index>/...png")
    _add_model_args(p)
    p.add_argument("--embeds", nargs="+", required=True, metavar="FILE",
                   help="learned_embeds.safetensors (or A1111 .pt) files; any number of concepts (required)")
    add_config_args(p, GenerateConfig, GENERATE_WORDS)
    p.add_argument("--overwrite", action="store_true",
                   help="replace a non-empty OUT (only once the new layout is complete)")
    p.add_argument("--resume", action="store_true",
                   help="keep images already in OUT, draw the missing ones; writes in place, so a long run "
                        "started with --resume keeps its images if interrupted (without it, OUT appears only "
                        "when complete)")
    p.set_defaults(func=_generate)


def _add_compose(jobs) -> None:
    p = jobs.add_parser("compose", help="several concepts in one image: masked multi-path sampling",
                        description="One denoising path per --region; noise predictions blended by masks.")
    p.add_argument("out", metavar="OUT", help="output folder: compose_<seed>.png, regions.json")
    _add_model_args(p)
    p.add_argument("--embeds", nargs="*", default=[], metavar="FILE",
                   help=option_help("learned_embeds.safetensors (or A1111 .pt) files of the regions' tokens", NONE))
    p.add_argument("--prompt", required=True, help="scene prompt; {} marks where each region's text goes (required)")
    p.add_argument("--region", action="append", required=True, metavar="TEXT:MASK",
                   help="e.g. '<new1>:left'; MASK is left|right|top|bottom|full or a mask image (repeatable, "
                        "required)")
    add_config_args(p, ComposeConfig, COMPOSE_WORDS)
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty OUT")
    p.set_defaults(func=_compose)


def register(subparsers) -> None:
    from difflab.device import add_device_arg

    ti = subparsers.add_parser("ti", help="textual inversion for Stable Diffusion v1.x")
    jobs = ti.add_subparsers(dest="ti_command", required=True)
    _add_train(jobs)
    _add_generate(jobs)

    p = jobs.add_parser("score", help="CLIP scores of a generated layout, PASS/FAIL against the baselines")
    p.add_argument("prompts", metavar="PROMPTS.json", help="the prompts `ti generate` drew")
    p.add_argument("out", metavar="OUT", help="the folder `ti generate` wrote")
    p.add_argument("--concepts", required=True, metavar="DIR", help="reference photos in DIR/<key>/ (required)")
    p.add_argument("--clip", required=True, metavar="CLIP_DIR", help="transformers CLIPModel folder (required)")
    p.add_argument("--report", default=None, help=option_help("scores JSON", "OUT/scores.json"))
    add_device_arg(p)
    p.set_defaults(func=_score)

    _add_compose(jobs)
    for name, func, help_ in (
            ("export-a1111", _export, "diffusers embedding -> Automatic1111 .pt/.safetensors"),
            ("import-a1111", _import, "Automatic1111 embedding -> learned_embeds.safetensors")):
        p = jobs.add_parser(name, help=help_)
        p.add_argument("src", help="the embedding file to convert")
        p.add_argument("dst", help="the file to write")
        p.add_argument("--token", default=None,
                       help=option_help("token to export / name to import as", "the file's own token"))
        p.set_defaults(func=func)
