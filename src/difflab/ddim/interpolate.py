"""Interpolating starting noises: slerp vs lerp, and why their norms differ.

A standard Gaussian in D dimensions lives near the shell ||x|| = sqrt(D). lerp between two (nearly
orthogonal) samples cuts through the ball: at a = 0.5 its norm is about sqrt(D/2), noise the model
never saw at t = T, so midway images wash out. slerp follows the great circle and keeps the norm.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from difflab.ddim.config import DDIMConfig
from difflab.errors import DifflabError
from difflab.models.loaders import EpsModel

PARALLEL_EPS = 1e-6  # below this sin(theta) the slerp weights are 0/0: fall back to lerp


def lerp(x0: torch.Tensor, x1: torch.Tensor, alpha: float) -> torch.Tensor:
    """(1 - a) x0 + a x1, any matching shapes."""
    return (1 - alpha) * x0 + alpha * x1


def slerp(x0: torch.Tensor, x1: torch.Tensor, alpha: float) -> torch.Tensor:
    """Spherical interpolation of two tensors of the same shape (treated as flat vectors).

    x = sin((1-a) theta)/sin(theta) x0 + sin(a theta)/sin(theta) x1, theta = arccos(<x0, x1>/|x0||x1|);
    lerp when x0 and x1 are (anti)parallel, where theta is 0 or pi and the formula divides by ~0.
    Computed in float64 (arccos near 1 loses digits in float32), returned in x0's dtype.
    """
    if x0.shape != x1.shape:
        raise DifflabError(f"cannot interpolate shapes {tuple(x0.shape)} and {tuple(x1.shape)}")
    a, b = x0.double(), x1.double()
    na, nb = a.norm(), b.norm()
    if na == 0 or nb == 0:
        return lerp(x0, x1, alpha)
    cos = ((a.flatten() @ b.flatten()) / (na * nb)).clamp(-1.0, 1.0)
    theta = torch.arccos(cos)
    sin = torch.sin(theta)
    if sin < PARALLEL_EPS:
        return lerp(x0, x1, alpha)
    out = torch.sin((1 - alpha) * theta) / sin * a + torch.sin(alpha * theta) / sin * b
    return out.to(x0.dtype)


def interpolation_noises(x0: torch.Tensor, x1: torch.Tensor, alphas: Sequence[float]
                         ) -> tuple[torch.Tensor, torch.Tensor]:
    """(slerp rows, lerp rows), each (len(alphas), C, H, W), from two (C, H, W) noises."""
    s = torch.stack([slerp(x0, x1, a) for a in alphas])
    l = torch.stack([lerp(x0, x1, a) for a in alphas])
    return s, l


def interpolate(model: EpsModel, cfg: DDIMConfig, x0: torch.Tensor, x1: torch.Tensor,
                alphas: Sequence[float], progress: bool = True):
    """Sample both rows; return (labelled PIL image, norms rows [(alpha, |slerp|, |lerp|)])."""
    from difflab.ddim.run import run_sampler
    from difflab.io import to_uint8
    from difflab.viz import grid

    if any(not 0.0 <= a <= 1.0 for a in alphas):
        raise DifflabError(f"interpolation alphas must be in [0, 1], got {list(alphas)}")
    s, l = interpolation_noises(x0, x1, alphas)
    sampler = cfg.sampler(cfg.schedule(model.schedule))
    # the same index per column in both rows, so with eta > 0 both rows also share the per-step noise
    idx = list(range(len(alphas))) * 2
    images = run_sampler(model, sampler, torch.cat([s, l]), cfg.seed, cfg.batch_size, idx, progress,
                         desc="interpolating")
    tiles = to_uint8(images, cfg.to_pixels)
    scale = max(1, -(-64 // tiles.shape[1]))
    radius = math.sqrt(x0.numel())
    image = grid(tiles, ncols=len(alphas), scale=scale, row_labels=["slerp", "lerp"],
                 col_labels=[f"{a:.2f}" for a in alphas],
                 title=f"noise interpolation, alpha 0..1 (Gaussian shell radius sqrt(D) = {radius:.1f})")
    norms = [(float(a), float(si.norm()), float(li.norm())) for a, si, li in zip(alphas, s, l)]
    return image, norms


def save_norms_plot(norms: list[tuple[float, float, float]], dim: int, path) -> None:
    """Line plot of |slerp| and |lerp| against alpha, with the shell radius sqrt(D)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from difflab.viz import save_figure

    a = [n[0] for n in norms]
    fig, ax = plt.subplots(figsize=(5, 3.2), dpi=120)
    ax.plot(a, [n[1] for n in norms], "o-", label="slerp")
    ax.plot(a, [n[2] for n in norms], "s-", label="lerp")
    ax.axhline(math.sqrt(dim), color="gray", ls="--", label=r"$\sqrt{D}$")
    ax.set_xlabel("alpha")
    ax.set_ylabel("||x_T||")
    ax.legend()
    save_figure(fig, path)
