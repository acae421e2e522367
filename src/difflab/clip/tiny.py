"""Random-weight CLIP model folders for tests and benchmarks (no real weights exist on this machine).

`save_tiny_clip(out_dir)` writes what `ClipScorer.from_pretrained` and the textual-inversion code read:
a transformers `CLIPModel` (config.json + model.safetensors), OpenAI's real tokenizer files (converted
from the open-clip wheel, see `difflab.models.clip_vocab`) and a `preprocessor_config.json`.
`size="vit-b-32"` builds the exact architecture of `openai/clip-vit-base-patch32` (151M parameters) for
throughput benchmarks.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch

from difflab.errors import DifflabError
from difflab.models.clip_vocab import N_MERGES, write_clip_tokenizer

# (text, vision, projection_dim); ViT-B/32 numbers are those of openai/clip-vit-base-patch32's config.json
SIZES = {
    "tiny": (dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2),
             dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                  image_size=32, patch_size=8),
             16),
    "vit-b-32": (dict(hidden_size=512, intermediate_size=2048, num_hidden_layers=12, num_attention_heads=8),
                 dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
                      image_size=224, patch_size=32),
                 512),
}


def tiny_clip_config(size: str = "tiny", vocab_size: int = 49408, logit_scale: float = 100.0):
    """A `transformers.CLIPConfig` for `size` ("tiny" or "vit-b-32").

    `logit_scale` is the multiplier exp(logit_scale_param) applied to cosines; real CLIP weights end
    training at 100 (clamped there), so that is the default here too.
    """
    from transformers import CLIPConfig

    if size not in SIZES:
        raise DifflabError(f"tiny.py: unknown size {size!r} (use one of {', '.join(SIZES)})")
    text, vision, proj = SIZES[size]
    # ids follow OpenAI's layout: BOS and EOS are the last two tokens whatever the vocabulary size
    text = dict(text, vocab_size=vocab_size, max_position_embeddings=77,
                bos_token_id=vocab_size - 2, eos_token_id=vocab_size - 1, pad_token_id=vocab_size - 1)
    return CLIPConfig(text_config=text, vision_config=vision, projection_dim=proj,
                      logit_scale_init_value=math.log(logit_scale))


def save_tiny_clip(out_dir, size: str = "tiny", seed: int = 0, max_merges: int | None = None,
                   logit_scale: float = 100.0) -> Path:
    """Build a random `CLIPModel` of `size`, save it with tokenizer + image processor into `out_dir`.

    `max_merges` shrinks the vocabulary (see `write_clip_tokenizer`); the default keeps all 49408 tokens
    so prompts are tokenised exactly as with the real model. Weights depend only on `seed`.
    Returns `out_dir`.
    """
    from transformers import CLIPImageProcessorPil, CLIPModel

    out = Path(out_dir)
    n_merges = N_MERGES if max_merges is None else max_merges
    config = tiny_clip_config(size, vocab_size=512 + n_merges + 2, logit_scale=logit_scale)
    with torch.random.fork_rng(devices=[]):  # random init must not disturb the caller's global RNG
        torch.manual_seed(seed)
        model = CLIPModel(config).eval()
    model.save_pretrained(out)
    res = config.vision_config.image_size
    # the PIL processor: the default CLIPImageProcessor wants torchvision, absent here (see docs/machine-notes.md)
    CLIPImageProcessorPil(size={"shortest_edge": res}, crop_size={"height": res, "width": res}) \
        .save_pretrained(out)
    write_clip_tokenizer(out, max_merges=max_merges)
    return out
