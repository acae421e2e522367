"""Random-weight Stable Diffusion v1 pipelines built from configs (no real weights exist here).

`save_tiny_sd(out_dir)` writes a diffusers folder (model_index.json + unet/vae/text_encoder/tokenizer/
scheduler) that our loader (`difflab.models.sd.load_sd`) and `StableDiffusionPipeline.from_pretrained`
both read. The tokenizer is OpenAI's real CLIP BPE vocabulary (49408 tokens, from the open-clip wheel), so
prompts, added tokens and multi-vector expansion behave exactly as with real SD; only the networks are
tiny and random. The scheduler numbers are SD v1's own (`models.sd.SD_SCHEDULER`).

`size="sd15"` builds components with the exact SD-v1.5 architectures (UNet 860M, VAE 84M, CLIP ViT-L/14
text encoder 123M parameters) for the timing benchmark.
"""

from __future__ import annotations

from pathlib import Path

import torch

from difflab.errors import DifflabError
from difflab.models.sd import SD_SCHEDULER

UNET = {
    # two levels, one of them with cross-attention: enough to exercise every code path in a few ms
    "tiny": dict(block_out_channels=(32, 64), layers_per_block=1, down_block_types=(
        "CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=32, attention_head_dim=8, norm_num_groups=32, sample_size=8),
    "sd15": dict(block_out_channels=(320, 640, 1280, 1280), layers_per_block=2, down_block_types=(
        "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=768, attention_head_dim=8, norm_num_groups=32, sample_size=64),
}
VAE = {
    # four blocks, as in SD, so the image -> latent factor is the real 8 (64 px images -> 8x8 latents);
    # 32 groups because the original LDM VAE hard-codes GroupNorm(32) (single-file checkpoints need it)
    "tiny": dict(block_out_channels=(32, 32, 64, 64), layers_per_block=1, norm_num_groups=32, sample_size=64),
    "sd15": dict(block_out_channels=(128, 256, 512, 512), layers_per_block=2, norm_num_groups=32,
                 sample_size=512),
}
TEXT = {
    "tiny": dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                 projection_dim=32),
    "sd15": dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
                 projection_dim=768),
}


def build_components(size: str = "tiny", seed: int = 0, tokenizer_dir=None) -> dict:
    """Random SD components of `size` ("tiny" or "sd15"): unet, vae, text_encoder, tokenizer, scheduler.

    Weights depend only on `seed` (the caller's global RNG is left untouched). The text encoder's
    vocabulary equals `len(tokenizer)` (diffusers' `load_textual_inversion` resizes to that length).
    `tokenizer_dir` is a folder holding CLIP tokenizer files; written to a temp folder if not given.
    """
    import tempfile

    from diffusers import AutoencoderKL, PNDMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    from difflab.models.clip_vocab import write_clip_tokenizer

    if size not in UNET:
        raise DifflabError(f"tiny.py: unknown size {size!r} (use one of {', '.join(UNET)})")
    if tokenizer_dir is None:
        tokenizer_dir = write_clip_tokenizer(tempfile.mkdtemp(prefix="difflab_tok_"))
    tokenizer = CLIPTokenizer.from_pretrained(tokenizer_dir)
    n = len(tokenizer)
    text_cfg = CLIPTextConfig(**TEXT[size], vocab_size=n, max_position_embeddings=77, hidden_act="quick_gelu",
                              bos_token_id=n - 2, eos_token_id=n - 1, pad_token_id=n - 1)
    vae_cfg = dict(VAE[size])
    nb = len(vae_cfg["block_out_channels"])
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        unet = UNet2DConditionModel(in_channels=4, out_channels=4, **UNET[size])
        vae = AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4, scaling_factor=0.18215,
                            down_block_types=("DownEncoderBlock2D",) * nb,
                            up_block_types=("UpDecoderBlock2D",) * nb, **vae_cfg)
        text_encoder = CLIPTextModel(text_cfg)
    return dict(unet=unet.eval(), vae=vae.eval(), text_encoder=text_encoder.eval(), tokenizer=tokenizer,
                scheduler=PNDMScheduler.from_config(SD_SCHEDULER))


def build_pipeline(size: str = "tiny", seed: int = 0, tokenizer_dir=None):
    """An in-memory `StableDiffusionPipeline` with random weights (no safety checker)."""
    from diffusers import StableDiffusionPipeline

    comps = build_components(size, seed, tokenizer_dir)
    return StableDiffusionPipeline(**comps, safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)


def save_tiny_sd(out_dir, size: str = "tiny", seed: int = 0) -> Path:
    """Write a random SD pipeline of `size` as a diffusers folder into `out_dir`; returns `out_dir`."""
    from difflab.models.clip_vocab import write_clip_tokenizer

    out = Path(out_dir)
    tok_dir = write_clip_tokenizer(out / "tokenizer")
    build_pipeline(size, seed, tokenizer_dir=tok_dir).save_pretrained(out)
    return out
