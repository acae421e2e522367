"""Generate images for a PROMPTS.json with any number of learned concepts loaded into one pipeline.

Layout: OUT/<key>/<prompt_index>/source<key>_prompt<prompt_index>_<k>.png, k = 0..N-1, exactly N files
per folder. Each image has its own seed, derived from (--seed, key, prompt index, k), so an image does
not depend on the batch size or on which other prompts were run; `resume=True` keeps finished images
and draws only the missing ones (the same images an uninterrupted run would have drawn).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from difflab.errors import DifflabError
from difflab.io import inplace_output_dir, save_png, staged_output_dir
from difflab.personalize import embeddings as E
from difflab.personalize.config import GenerateConfig
from difflab.personalize.prompts import Concept, image_path, load_prompts


def load_concepts(pipe, embed_files) -> dict[str, int]:
    """Add every token of every embedding file to `pipe`; returns {token: number of vectors}."""
    merged: dict[str, torch.Tensor] = {}
    for path in embed_files:
        for token, vectors in E.read_embeds(path).items():
            if token in merged:
                raise DifflabError(f"{path}: token {token!r} is already defined by another embedding file")
            merged[token] = vectors
    E.add_concepts(pipe.tokenizer, pipe.text_encoder, merged)
    return {t: v.shape[0] for t, v in merged.items()}


def image_seed(seed: int, key: str, prompt_index: int, k: int) -> int:
    """A 63-bit seed for one image, stable across runs, batch sizes and Python versions."""
    digest = hashlib.sha256(f"{seed}/{key}/{prompt_index}/{k}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def check_prompts(pipe, concepts: list[Concept]) -> None:
    """Every `<token>` used by a prompt must be loaded (raises DifflabError naming the prompt)."""
    for c in concepts:
        for i in range(len(c.prompts)):
            E.expand_prompt(c.prompt(i), pipe.tokenizer)


@torch.no_grad()
def generate_images(pipe, prompt: str, seeds: list[int], steps: int, guidance: float,
                    size: int | None = None) -> np.ndarray:
    """One prompt, one image per seed -> (N, H, W, 3) uint8."""
    size = size or pipe.unet.config.sample_size * pipe.vae_scale_factor
    gens = [torch.Generator().manual_seed(s) for s in seeds]  # CPU generators: same images on any device
    out = pipe([prompt] * len(seeds), num_inference_steps=steps, guidance_scale=guidance, height=size,
               width=size, generator=gens, output_type="np")
    if not np.isfinite(out.images).all():  # NaN would become black pixels without a word
        raise DifflabError(f"the pipeline produced NaN/inf pixels for {prompt!r} (check --guidance and the "
                           "embeddings)")
    return (np.clip(out.images, 0, 1) * 255).round().astype(np.uint8)


def generate_layout(pipe, concepts: list[Concept], out_dir, cfg: GenerateConfig | None = None,
                    progress: bool = True) -> list[Path]:
    """Write the image layout for `concepts` with an already loaded pipeline; returns the image paths.

    Images already on disk are kept (callers decide whether the folder may hold any).
    """
    cfg = cfg or GenerateConfig()
    cfg.check()
    check_prompts(pipe, concepts)
    jobs = [(c, i, k) for c in concepts for i in range(len(c.prompts)) for k in range(cfg.per_prompt)]
    todo = [j for j in jobs if not image_path(out_dir, j[0].key, j[1], j[2]).is_file()]
    bar = tqdm(total=len(jobs), initial=len(jobs) - len(todo), desc="generate", unit="img",
               disable=not progress)
    while todo:
        # a batch holds images of one prompt only (the pipeline takes one prompt per call)
        c, i, _ = todo[0]
        batch = [j for j in todo[:cfg.batch_size] if j[0] is c and j[1] == i]
        todo = todo[len(batch):]
        images = generate_images(pipe, c.prompt(i), [image_seed(cfg.seed, c.key, i, k) for _, _, k in batch],
                                 cfg.steps, cfg.guidance, cfg.size)
        for (_, _, k), im in zip(batch, images):
            save_png(image_path(out_dir, c.key, i, k), im)
        bar.update(len(batch))
    bar.close()
    return [image_path(out_dir, c.key, i, k) for c, i, k in jobs]


def generate(prompts_file, out_dir, model, embed_files, cfg: GenerateConfig | None = None, overwrite: bool = False,
             resume: bool = False, device: str = "auto", original_config=None, config_dir=None,
             progress: bool = True) -> list[Path]:
    """`difflab ti generate`: load SD + embeddings, write the layout into `out_dir` (settings: `cfg`, checked
    when it was built, so before any loading)."""
    from difflab.device import resolve_device
    from difflab.models.sd import load_sd

    cfg = cfg or GenerateConfig()
    cfg.check()
    resolve_device(device)  # refused in one line before any loading
    concepts = load_prompts(prompts_file)
    if not embed_files:
        raise DifflabError("no --embeds given: pass the learned_embeds.safetensors of the prompts' tokens")
    pipe = load_sd(model, original_config=original_config, config_dir=config_dir, device=device)
    load_concepts(pipe, embed_files)
    check_prompts(pipe, concepts)  # before touching OUT: a typo in a token must not cost the folder
    if resume:  # written in place (locked), so an interrupted run keeps every image it finished
        with inplace_output_dir(out_dir, resume=True) as out:
            return generate_layout(pipe, concepts, out, cfg, progress)
    # built aside and swapped in complete: a failed run leaves no folder and keeps an old one
    with staged_output_dir(out_dir, overwrite) as stage:
        paths = generate_layout(pipe, concepts, stage, cfg, progress)
    return [Path(out_dir) / p.relative_to(stage) for p in paths]
