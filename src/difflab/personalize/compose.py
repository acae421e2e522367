"""Several learned concepts in one image: one denoising path per region prompt, blended by masks.

MultiDiffusion-style multipath sampling (Bar-Tal et al. 2023; the "multipath" idea of Concept
Conductor): one latent x_t is shared by all paths. At every step each region r predicts its own
classifier-free-guided noise eps_r from its own prompt (which names only its own concept), and the
update uses the mask-weighted blend

    eps = sum_r w_r * eps_r + w_base * eps_base,      w_r = (1 - base_weight) * m_r / max(1, sum_r m_r)

with m_r the region masks in latent resolution (H/8 x W/8) and w_base = 1 - sum_r w_r (the base path
with the whole prompt fills whatever the masks leave uncovered, and `base_weight` of everything).
A concept's token never meets another concept's token in one text-encoder pass or one cross-attention
map, so attributes cannot leak between concepts; the price is one UNet pass per path and step, seams
where masks meet, and a scene that is only as coherent as the shared latent makes it (see
docs/textual_inversion.md for where it fails).

Each path's guided prediction is computed exactly as `StableDiffusionPipeline` computes it (its own
[uncond, cond] batch), so a mask covering the whole image reproduces the single-prompt pipeline.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from difflab.errors import DifflabError
from difflab.personalize import embeddings as E
from difflab.personalize.config import ComposeConfig

NAMED = ("left", "right", "top", "bottom", "full")


@dataclass
class Region:
    text: str     # a learned token (or any text) that this region's path adds to the prompt
    where: str    # left | right | top | bottom | full | path to a mask image (white = this region)


def parse_region(spec: str) -> Region:
    """'<new1>:left' -> Region('<new1>', 'left'); the last ':' separates text and mask."""
    text, sep, where = spec.rpartition(":")
    if not sep or not text.strip() or not where.strip():
        raise DifflabError(f"--region {spec!r}: expected TEXT:MASK, e.g. '<new1>:left' or '<new1>:mask.png'")
    return Region(text.strip(), where.strip())


def region_prompts(prompt: str, regions: list[Region]) -> tuple[list[str], str]:
    """Per-region prompts and the base prompt.

    With `{}` in `prompt`, region r gets prompt.replace("{}", text_r) and the base path gets all texts
    joined by " and "; without it, region r gets f"{text_r}, {prompt}" and the base path `prompt`.
    """
    texts = [r.text for r in regions]
    if "{}" in prompt:
        return [prompt.replace("{}", t) for t in texts], prompt.replace("{}", " and ".join(texts))
    return [f"{t}, {prompt}" for t in texts], prompt


def _mask(where: str, h: int, w: int) -> torch.Tensor:
    m = torch.zeros(h, w)
    if where == "left":
        m[:, : w // 2] = 1
    elif where == "right":
        m[:, w // 2:] = 1
    elif where == "top":
        m[: h // 2] = 1
    elif where == "bottom":
        m[h // 2:] = 1
    elif where == "full":
        m[:] = 1
    else:
        from PIL import Image

        from difflab.io import load_image

        if not Path(where).is_file():
            raise DifflabError(f"{where}: mask must be one of {', '.join(NAMED)} or an image file")
        gray = load_image(where, mode="L")  # (H, W, ...) uint8; resized by area so thin edges stay soft
        small = Image.fromarray(gray.squeeze()).resize((w, h), Image.BOX)
        m = torch.from_numpy(np.array(small)).float() / 255
    return m


def _blur(m: torch.Tensor, sigma: float) -> torch.Tensor:
    """Gaussian blur of an (h, w) mask; constant masks are returned unchanged (exactly)."""
    if sigma <= 0 or m.min() == m.max():
        return m
    r = max(1, int(3 * sigma))
    k = torch.exp(-0.5 * (torch.arange(-r, r + 1) / sigma) ** 2)
    k = k / k.sum()
    x = F.pad(m[None, None], (r, r, r, r), mode="replicate")
    x = F.conv2d(x, k.view(1, 1, 1, -1))
    return F.conv2d(x, k.view(1, 1, -1, 1))[0, 0].clamp(0, 1)


def blend_weights(regions: list[Region], h: int, w: int, feather: float = 0.0,
                  base_weight: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Latent-space weights: (R, 1, h, w) for the regions and (1, h, w) for the base path; they sum to 1."""
    if not 0 <= base_weight <= 1:
        raise DifflabError(f"--base-weight {base_weight}: must be in [0, 1]")
    m = torch.stack([_blur(_mask(r.where, h, w), feather) for r in regions])[:, None]
    wr = m / m.sum(0, keepdim=True).clamp_min(1.0)  # overlaps share; uncovered pixels go to the base
    if base_weight:
        wr = (1 - base_weight) * wr
    return wr, (1 - wr.sum(0)).clamp_min(0.0)


class _Path:
    """One prompt's guided noise prediction, computed as StableDiffusionPipeline does."""

    def __init__(self, pipe, prompt: str, negative: str, guidance: float):
        self.pipe, self.guidance = pipe, guidance
        cond, uncond = pipe.encode_prompt(prompt, pipe.device, 1, guidance > 1, negative or None)
        self.embeds = torch.cat([uncond, cond]) if guidance > 1 else cond

    def eps(self, latents: torch.Tensor, t) -> torch.Tensor:
        pipe = self.pipe
        x = torch.cat([latents] * 2) if self.guidance > 1 else latents
        x = pipe.scheduler.scale_model_input(x, t)
        e = pipe.unet(x, t, encoder_hidden_states=self.embeds, return_dict=False)[0]
        if self.guidance > 1:
            e_u, e_c = e.chunk(2)
            e = e_u + self.guidance * (e_c - e_u)
        return e


@torch.no_grad()
def compose(pipe, prompt: str, regions: list[Region], cfg: ComposeConfig | None = None,
            generator: torch.Generator | None = None, progress: bool = True) -> np.ndarray:
    """One composed image -> (H, W, 3) float32 in [0, 1] (what the pipeline's output_type="np" gives), with
    cfg's steps, guidance, size, feather, base_weight and negative_prompt (its seed and num are the caller's).

    Latents are drawn from `generator` exactly as `StableDiffusionPipeline` draws them.
    """
    cfg = cfg or ComposeConfig()
    steps, guidance, size, negative_prompt = cfg.steps, cfg.guidance, cfg.size, cfg.negative_prompt
    if not regions:
        raise DifflabError("compose needs at least one --region")
    size = size or pipe.unet.config.sample_size * pipe.vae_scale_factor
    if size % pipe.vae_scale_factor:
        raise DifflabError(f"--size {size}: must be a multiple of {pipe.vae_scale_factor}")
    prompts, base_prompt = region_prompts(prompt, regions)
    for p in prompts + [base_prompt]:
        E.expand_prompt(p, pipe.tokenizer)  # raises on unknown <tokens>
    h = w = size // pipe.vae_scale_factor
    wr, wb = blend_weights(regions, h, w, cfg.feather, cfg.base_weight)
    paths = [_Path(pipe, p, negative_prompt, guidance) for p in prompts]
    weights = list(wr)
    if (wb > 0).any():  # the base path costs a UNet pass per step: only when some pixel needs it
        paths.append(_Path(pipe, base_prompt, negative_prompt, guidance))
        weights.append(wb)
    dev, dtype = pipe.device, paths[0].embeds.dtype
    weights = [wt.to(dev, dtype) for wt in weights]
    pipe.scheduler.set_timesteps(steps, device=dev)
    latents = pipe.prepare_latents(1, pipe.unet.config.in_channels, size, size, dtype, dev, generator)
    extra = pipe.prepare_extra_step_kwargs(generator, 0.0)
    for t in tqdm(pipe.scheduler.timesteps, desc="compose", disable=not progress):
        eps = sum(wt * p.eps(latents, t) for wt, p in zip(weights, paths))
        latents = pipe.scheduler.step(eps, t, latents, **extra, return_dict=False)[0]
    latents = latents / pipe.vae.config.scaling_factor
    image = pipe.vae.decode(latents, return_dict=False, generator=generator)[0]
    return pipe.image_processor.postprocess(image, output_type="np", do_denormalize=[True])[0]
