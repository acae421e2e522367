"""`difflab digits ...` and `difflab data ...` subcommands."""

from __future__ import annotations

import argparse
from dataclasses import fields

from difflab.models.unet import UNetConfig


def _train(args):
    from difflab.digits.train import TrainConfig, train

    unet = UNetConfig(base_channels=args.base_channels, channel_mults=tuple(args.channel_mults),
                      num_res_blocks=args.num_res_blocks, attention_levels=tuple(args.attention_levels))
    names = {f.name for f in fields(TrainConfig)} - {"unet"}
    cfg = TrainConfig(**{k: v for k, v in vars(args).items() if k in names}, unet=unet)
    trainer = train(cfg, resume=args.resume)
    if trainer.rank == 0:
        print(f"EMA weights: {cfg.out_dir}/ema.safetensors (step {trainer.step})")


def _train_classifier(args):
    from difflab.digits.classify import default_classifier_path, train_classifier

    out = args.out or default_classifier_path(args.domain)
    _, acc = train_classifier(args.domain, out, epochs=args.epochs, seed=args.seed, data_root=args.data_root)
    print(f"{args.domain} classifier: val acc = {acc:.4f} -> {out}")


def _preview(args):
    from difflab.digits.viz_data import preview

    for path in preview(args.out_dir, data_root=args.data_root, seed=args.seed):
        print(path)


def register(sub: argparse._SubParsersAction) -> None:
    from difflab.digits.train import TrainConfig

    d = TrainConfig()
    digits = sub.add_parser("digits", help="conditional digit diffusion (MNIST-M + SVHN)")
    dsub = digits.add_subparsers(dest="digits_command", required=True)

    p = dsub.add_parser("train", help="train the conditional DDPM (torchrun-capable)")
    p.add_argument("--out-dir", default=d.out_dir)
    p.add_argument("--resume", default=None, help="'latest' or a checkpoint path")
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
    p.set_defaults(func=_train)

    p = dsub.add_parser("train-classifier", help="train a domain's evaluation classifier")
    p.add_argument("--domain", required=True, choices=["mnistm", "svhn"])
    p.add_argument("--out", default=None)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data-root", default=None)
    p.set_defaults(func=_train_classifier)

    data = sub.add_parser("data", help="digit datasets")
    dasub = data.add_subparsers(dest="data_command", required=True)
    p = dasub.add_parser("preview", help="write a 10x10 grid of each domain")
    p.add_argument("out_dir")
    p.add_argument("--data-root", default=None)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_preview)
