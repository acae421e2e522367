"""`difflab ti train|generate|score|compose|export-a1111|import-a1111`: textual inversion for SD v1.x.

Only light imports at module level: diffusers/transformers/torch load inside the handlers.
"""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

from difflab.personalize.config import TrainConfig

HELP = {
    "vectors": "vectors per token (multi-vector tokens expand to <tok> <tok>_1 ...)",
    "what": "object or style: which caption templates to train with",
    "lr": "AdamW learning rate (not scaled by batch size)",
    "resolution": "training image size in pixels (multiple of 8; SD v1: 512)",
    "grad_accum": "micro-batches per optimizer step",
    "validate_every": "write validation images every N steps (0: never)",
    "flip": "probability of training on the mirrored photo",
}


def _add_model_args(p) -> None:
    p.add_argument("--model", required=True, metavar="SD",
                   help="diffusers SD v1.x folder, or an original .ckpt/.safetensors with --original-config")
    p.add_argument("--original-config", default=None, metavar="YAML",
                   help="v1-inference.yaml for a single-file checkpoint (converted offline)")
    p.add_argument("--config-dir", default=None, metavar="DIR",
                   help="diffusers-layout config folder for a single-file checkpoint (default: SD v1's)")
    from difflab.device import add_device_arg

    add_device_arg(p)


def _train(args) -> int:
    from difflab.personalize.train import train

    names = {f.name for f in fields(TrainConfig)}
    cfg = TrainConfig(**{k: v for k, v in vars(args).items() if k in names})
    train(args.model, args.images, args.out, cfg, resume=args.resume, overwrite=args.overwrite,
          device=args.device, original_config=args.original_config, config_dir=args.config_dir)
    print(f"{Path(args.out) / 'learned_embeds.safetensors'} ({cfg.token}: {cfg.vectors} vector(s))")
    return 0


def _generate(args) -> int:
    from difflab.personalize.generate import generate

    paths = generate(args.prompts, args.out, args.model, args.embeds, per_prompt=args.per_prompt,
                     steps=args.steps, guidance=args.guidance, seed=args.seed, batch_size=args.batch_size,
                     size=args.size, overwrite=args.overwrite, resume=args.resume, device=args.device,
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

    for path in run_compose(args):
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


def register(subparsers) -> None:
    ti = subparsers.add_parser("ti", help="textual inversion for Stable Diffusion v1.x")
    jobs = ti.add_subparsers(dest="ti_command", required=True)

    d = TrainConfig()
    p = jobs.add_parser("train", help="learn a new token from a few photos",
                        description="Train the embedding of --token on the photos in --images; writes "
                                    "OUT/learned_embeds.safetensors (diffusers format).")
    p.add_argument("out", metavar="OUT")
    _add_model_args(p)
    p.add_argument("--images", required=True, metavar="DIR", help="folder with the concept's photos")
    p.add_argument("--token", required=True, help="new token, e.g. '<new1>' (must not be in the vocabulary)")
    p.add_argument("--init-word", required=True, help="existing word to start from, e.g. dog")
    for f in fields(TrainConfig):
        if f.name in ("token", "init_word"):
            continue
        kind = {int: int, float: float, "int": int, "float": float}.get(f.type, str)
        extra = {"choices": ["object", "style"]} if f.name == "what" else {}
        p.add_argument(f"--{f.name.replace('_', '-')}", type=kind, default=getattr(d, f.name),
                       help=f"{HELP.get(f.name, '')} (default {getattr(d, f.name)})".strip(), **extra)
    p.add_argument("--resume", default=None, metavar="latest|CKPT",
                   help="continue from OUT/checkpoint.safetensors (latest) or a given checkpoint")
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty OUT")
    p.set_defaults(func=_train)

    p = jobs.add_parser("generate", help="images for every prompt of a PROMPTS.json")
    p.add_argument("prompts", metavar="PROMPTS.json")
    p.add_argument("out", metavar="OUT")
    _add_model_args(p)
    p.add_argument("--embeds", nargs="+", required=True, metavar="FILE",
                   help="learned_embeds.safetensors (or A1111 .pt) files; any number of concepts")
    p.add_argument("--per-prompt", type=int, default=25, help="images per prompt (default 25)")
    p.add_argument("--steps", type=int, default=50, help="DDIM steps (default 50)")
    p.add_argument("--guidance", type=float, default=7.5, help="classifier-free guidance (default 7.5)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=4, help="images per pipeline call (default 4)")
    p.add_argument("--size", type=int, default=None, help="image size in pixels (default: the model's)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace a non-empty OUT (only once the new layout is complete)")
    p.add_argument("--resume", action="store_true",
                   help="keep images already in OUT, draw the missing ones; writes in place, so a long run "
                        "started with --resume keeps its images if interrupted (without it, OUT appears only "
                        "when complete)")
    p.set_defaults(func=_generate)

    p = jobs.add_parser("score", help="CLIP scores of a generated layout, PASS/FAIL against the baselines")
    p.add_argument("prompts", metavar="PROMPTS.json")
    p.add_argument("out", metavar="OUT", help="the folder `ti generate` wrote")
    p.add_argument("--concepts", required=True, metavar="DIR", help="reference photos in DIR/<key>/")
    p.add_argument("--clip", required=True, metavar="CLIP_DIR", help="transformers CLIPModel folder")
    p.add_argument("--report", default=None, help="scores JSON (default OUT/scores.json)")
    from difflab.device import add_device_arg

    add_device_arg(p)
    p.set_defaults(func=_score)

    p = jobs.add_parser("compose", help="several concepts in one image: masked multi-path sampling",
                        description="One denoising path per --region; noise predictions blended by masks.")
    p.add_argument("out", metavar="OUT", help="output folder")
    _add_model_args(p)
    p.add_argument("--embeds", nargs="*", default=[], metavar="FILE")
    p.add_argument("--prompt", required=True, help="scene prompt; {} marks where each region's text goes")
    p.add_argument("--region", action="append", required=True, metavar="TEXT:MASK",
                   help="e.g. '<new1>:left'; MASK is left|right|top|bottom|full or a mask image (repeatable)")
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--guidance", type=float, default=7.5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--num", type=int, default=1, help="images (seeds seed..seed+num-1)")
    p.add_argument("--size", type=int, default=None)
    p.add_argument("--feather", type=float, default=1.0, help="mask blur sigma in latent pixels (default 1)")
    p.add_argument("--base-weight", type=float, default=0.0,
                   help="share of the whole-prompt path everywhere (default 0: only where no mask covers)")
    p.add_argument("--negative-prompt", default="")
    p.add_argument("--with-paths", action="store_true",
                   help="also save each region prompt alone with the same noise, for comparison")
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=_compose)

    for name, func, help_ in (
            ("export-a1111", _export, "diffusers embedding -> Automatic1111 .pt/.safetensors"),
            ("import-a1111", _import, "Automatic1111 embedding -> learned_embeds.safetensors")):
        p = jobs.add_parser(name, help=help_)
        p.add_argument("src")
        p.add_argument("dst")
        p.add_argument("--token", default=None, help="token to export / name to import as")
        p.set_defaults(func=func)
