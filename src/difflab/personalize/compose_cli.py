"""`difflab ti compose` wiring: load SD + embeddings, compose `--num` images, write PNGs + regions.json."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from difflab.checks import check_count, check_guidance, check_number, check_seed
from difflab.io import atomic_path, save_png, staged_output_dir
from difflab.personalize.compose import Region, compose, parse_region, region_prompts

# --feather is a blur sigma in latent pixels (1/8 of the image's): SD v1's latents are 64 wide, so far
# beyond 100 every mask is a constant
MAX_FEATHER = 100.0


def _u8(image: np.ndarray) -> np.ndarray:
    return (np.clip(image, 0, 1) * 255).round().astype(np.uint8)


def run_compose(args) -> list[Path]:
    """OUT/compose_<seed>.png per seed; with --with-paths also OUT/path<r>_<seed>.png (region r alone)."""
    from difflab.models.sd import load_sd
    from difflab.personalize import embeddings as E
    from difflab.personalize.generate import check_size, load_concepts

    check_count("num", args.num)
    check_count("steps", args.steps)
    check_guidance("guidance", args.guidance)
    check_seed("seed", args.seed)
    check_size(args.size)
    check_number("feather", args.feather, 0, MAX_FEATHER)
    check_number("base_weight", args.base_weight, 0, 1)
    regions = [parse_region(s) for s in args.region]
    pipe = load_sd(args.model, original_config=args.original_config, config_dir=args.config_dir,
                   device=args.device)
    load_concepts(pipe, args.embeds)
    prompts, base = region_prompts(args.prompt, regions)
    for p in prompts + [base]:  # fail on an unknown token before the output folder is touched
        E.expand_prompt(p, pipe.tokenizer)
    # built aside, swapped in complete: a failed run leaves no folder and keeps an old one
    with staged_output_dir(args.out, args.overwrite) as stage:
        names = _write(pipe, args, regions, prompts, base, stage)
    return [Path(args.out) / n for n in names]


def _write(pipe, args, regions: list[Region], prompts: list[str], base: str, out: Path) -> list[str]:
    kw = dict(steps=args.steps, guidance=args.guidance, size=args.size, negative_prompt=args.negative_prompt)
    written = []
    for seed in range(args.seed, args.seed + args.num):
        image = compose(pipe, args.prompt, regions, generator=torch.Generator().manual_seed(seed),
                        feather=args.feather, base_weight=args.base_weight, **kw)
        save_png(out / f"compose_{seed}.png", _u8(image))
        written.append(f"compose_{seed}.png")
        for r, prompt in enumerate(prompts if args.with_paths else []):
            # the same noise with one full-image region == the plain pipeline for that region's prompt
            alone = compose(pipe, "{}", [Region(prompt, "full")], progress=False,
                            generator=torch.Generator().manual_seed(seed), **kw)
            save_png(out / f"path{r}_{seed}.png", _u8(alone))
            written.append(f"path{r}_{seed}.png")
    with atomic_path(out / "regions.json") as tmp:
        tmp.write_text(json.dumps({"prompt": args.prompt, "base_prompt": base, "feather": args.feather,
                                   "base_weight": args.base_weight,
                                   "regions": [{"text": r.text, "mask": r.where, "prompt": p}
                                               for r, p in zip(regions, prompts)]}, indent=2))
    return written
