"""Noise schedules and timestep spacings. Pure tensors, no models.

Notation follows DDPM (Ho et al. 2020) and DDIM (Song et al. 2021): `betas[t]` is the per-step noise
variance, `alphas_cumprod[t]` = prod_{s<=t} (1 - betas[s]) (written alpha_bar_t, or alpha_t in DDIM).
All scalars are float32 to match diffusers' schedulers bit for bit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from difflab.errors import DifflabError

BETA_SCHEDULES = ("linear", "scaled_linear", "cosine")
SPACINGS = ("leading", "trailing", "linspace")


def make_betas(kind: str = "linear", num_train_timesteps: int = 1000, beta_start: float = 1e-4,
               beta_end: float = 2e-2) -> torch.Tensor:
    """Return betas, shape (T,), float32."""
    T = num_train_timesteps
    if kind == "linear":
        return torch.linspace(beta_start, beta_end, T, dtype=torch.float32)
    if kind == "scaled_linear":  # Stable Diffusion's schedule: linear in sqrt(beta)
        return torch.linspace(beta_start**0.5, beta_end**0.5, T, dtype=torch.float32) ** 2
    if kind == "cosine":  # Nichol & Dhariwal 2021, eq. 17, betas capped at 0.999 as in their code

        def alpha_bar(t: float) -> float:
            return math.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2

        betas = [min(1 - alpha_bar((i + 1) / T) / alpha_bar(i / T), 0.999) for i in range(T)]
        return torch.tensor(betas, dtype=torch.float32)
    raise DifflabError(f"unknown beta schedule {kind!r} (choose from {', '.join(BETA_SCHEDULES)})")


@dataclass
class NoiseSchedule:
    """The forward process q(x_t | x_0) for T training steps."""

    kind: str = "linear"
    num_train_timesteps: int = 1000
    beta_start: float = 1e-4
    beta_end: float = 2e-2

    def __post_init__(self):
        self.betas = make_betas(self.kind, self.num_train_timesteps, self.beta_start, self.beta_end)
        self.alphas_cumprod = torch.cumprod(1.0 - self.betas, dim=0)

    def to_dict(self) -> dict:
        """The four fields as a JSON-ready dict (what checkpoints store as "schedule"); betas are rebuilt
        from them, so `NoiseSchedule.from_dict(s.to_dict())` gives the same tensors bit for bit."""
        return {"kind": self.kind, "num_train_timesteps": self.num_train_timesteps,
                "beta_start": self.beta_start, "beta_end": self.beta_end}

    @classmethod
    def from_dict(cls, d: dict) -> NoiseSchedule:
        """The inverse of `to_dict`. A missing key takes its default; an unknown key raises TypeError (a
        checkpoint from another version), which loaders turn into one line naming the file."""
        return cls(**d)

    def q_sample(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """Sample x_t ~ q(x_t | x_0) (DDPM eq. 4): sqrt(a_bar) x0 + sqrt(1 - a_bar) eps.

        x0, noise: (B, C, H, W); t: (B,) long in [0, T).
        """
        a_bar = self.alphas_cumprod.to(x0.device)[t].view(-1, 1, 1, 1)
        return a_bar.sqrt() * x0 + (1 - a_bar).sqrt() * noise


def make_timesteps(num_train_timesteps: int, num_steps: int, spacing: str = "leading",
                   offset: int = 0) -> torch.Tensor:
    """Descending sampling timesteps, shape (S,), int64 — the same values as diffusers' schedulers.

    leading:  0, T//S, 2T//S, ... (+ offset)   e.g. T=1000, S=50, offset=1 -> 981, 961, ..., 1
    trailing: round(T - k T/S) - 1             e.g. 999, 979, ..., 19 (always ends near T-1)
    linspace: round(linspace(0, T-1, S))       e.g. 999, 979, ..., 0
    """
    T, S = num_train_timesteps, num_steps
    if not 1 <= S <= T:
        raise DifflabError(f"steps must be in [1, {T}], got {S}")
    if offset and spacing != "leading":
        # diffusers silently ignores steps_offset for these spacings; an ignored option is a trap
        raise DifflabError(f"offset {offset} only applies to leading spacing, not {spacing!r}")
    if spacing == "leading":
        ts = (np.arange(0, S) * (T // S)).round()[::-1].astype(np.int64) + offset
    elif spacing == "trailing":
        # diffusers writes np.arange(T, 0, -T/S), which for some S (61, 103, ... at T=1000) returns S+1
        # values ending in -1. We take its first S values only, computed as numpy's arange does
        # (start + k * ((start + step) - start)), so every value rounds the same (some sit on .5).
        delta = (T + (-T / S)) - T
        ts = np.round(T + np.arange(S) * delta).astype(np.int64) - 1
    elif spacing == "linspace":
        ts = np.linspace(0, T - 1, S).round()[::-1].astype(np.int64)
    else:
        raise DifflabError(f"unknown timestep spacing {spacing!r} (choose from {', '.join(SPACINGS)})")
    if ts.max() >= T or ts.min() < 0:
        raise DifflabError(f"offset {offset} pushes timesteps outside [0, {T})")
    return torch.from_numpy(ts.copy())
