"""Augmentation of a few training images (personalization from ~20 images: concepts/personalize.py).

Only whole-pixel shifts: a learned style must not pick up the blur that resampling (rotation, scaling,
sub-pixel shifts) adds. On exact copies of 20 training images, 1-px shifts lowered the Fréchet distance to
held-out style images by 20-42 % (benchmarks/style_copy_floor.py); learning from shifted images helped one
style of three (docs/RESULTS.md §8), hence off by default.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def random_shift(x: torch.Tensor, max_px: int, g: torch.Generator) -> torch.Tensor:
    """Each image of x (B, C, H, W) moved by its own whole-pixel offset in [-max_px, max_px] along each axis,
    the border pixels repeated into the uncovered edge (a panel or paper background continues past the
    edge instead of turning black). Offsets drawn from `g` (CPU). max_px 0: x itself. Same dtype and range."""
    if max_px < 0:
        raise ValueError(f"max_px must be >= 0, got {max_px}")
    if max_px == 0:
        return x
    b, _, h, w = x.shape
    padded = F.pad(x, (max_px,) * 4, mode="replicate")
    dy, dx = torch.randint(0, 2 * max_px + 1, (2, b), generator=g)
    rows = (dy[:, None] + torch.arange(h))[:, :, None]  # (B, H, 1)
    cols = (dx[:, None] + torch.arange(w))[:, None, :]  # (B, 1, W)
    out = padded.permute(0, 2, 3, 1)[torch.arange(b)[:, None, None], rows, cols]  # (B, H, W, C)
    return out.permute(0, 3, 1, 2).contiguous()
