"""Small builders shared by the textual-inversion tests."""

import torch

from difflab.personalize.config import TrainConfig


def small_config(**kw) -> TrainConfig:
    """A few fast steps at 64 px (8x8 latents) on the tiny model."""
    base = dict(token="<new1>", init_word="dog", steps=3, resolution=64, grad_accum=2, batch_size=2,
                validate_every=0, checkpoint_every=2, lr=5e-2)
    base.update(kw)
    return TrainConfig(**base)


def random_embeds(dim: int, n: int = 1, seed: int = 0):
    return torch.randn(n, dim, generator=torch.Generator().manual_seed(seed))
