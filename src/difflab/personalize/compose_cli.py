"""`difflab ti compose` wiring: load SD + embeddings, compose `--num` images, write PNGs + regions.json."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from difflab.io import atomic_path, save_png, staged_output_dir
from difflab.personalize.compose import Region, compose, parse_region, region_prompts
from difflab.personalize.config import ComposeConfig


def _u8(image: np.ndarray) -> np.ndarray:
    return (np.clip(image, 0, 1) * 255).round().astype(np.uint8)


def run_compose(out_dir, model, embed_files, prompt: str, region_specs: list[str], cfg: ComposeConfig,
                overwrite: bool = False, device: str = "auto", original_config=None, config_dir=None) -> list[Path]:
    """OUT/compose_<seed>.png per seed; with cfg.with_paths also OUT/path<r>_<seed>.png (region r alone).
    region_specs: 'TEXT:MASK' strings (parse_region)."""
    from difflab.models.sd import load_sd
    from difflab.personalize import embeddings as E
    from difflab.personalize.generate import load_concepts

    cfg.check()
    regions = [parse_region(s) for s in region_specs]
    pipe = load_sd(model, original_config=original_config, config_dir=config_dir, device=device)
    load_concepts(pipe, embed_files)
    prompts, base = region_prompts(prompt, regions)
    for p in prompts + [base]:  # fail on an unknown token before the output folder is touched
        E.expand_prompt(p, pipe.tokenizer)
    # built aside, swapped in complete: a failed run leaves no folder and keeps an old one
    with staged_output_dir(out_dir, overwrite) as stage:
        names = _write(pipe, cfg, prompt, regions, prompts, base, stage)
    return [Path(out_dir) / n for n in names]


def _write(pipe, cfg: ComposeConfig, prompt: str, regions: list[Region], prompts: list[str], base: str,
           out: Path) -> list[str]:
    # each region alone: one full-image region, no blur or base path (with the same noise it equals the
    # plain pipeline for that region's prompt)
    alone_cfg = replace(cfg, feather=0.0, base_weight=0.0)
    written = []
    for seed in range(cfg.seed, cfg.seed + cfg.num):
        image = compose(pipe, prompt, regions, cfg, generator=torch.Generator().manual_seed(seed))
        save_png(out / f"compose_{seed}.png", _u8(image))
        written.append(f"compose_{seed}.png")
        for r, region_prompt in enumerate(prompts if cfg.with_paths else []):
            alone = compose(pipe, "{}", [Region(region_prompt, "full")], alone_cfg, progress=False,
                            generator=torch.Generator().manual_seed(seed))
            save_png(out / f"path{r}_{seed}.png", _u8(alone))
            written.append(f"path{r}_{seed}.png")
    with atomic_path(out / "regions.json") as tmp:
        tmp.write_text(json.dumps({"prompt": prompt, "base_prompt": base, "feather": cfg.feather,
                                   "base_weight": cfg.base_weight,
                                   "regions": [{"text": r.text, "mask": r.where, "prompt": p}
                                               for r, p in zip(regions, prompts)]}, indent=2))
    return written
