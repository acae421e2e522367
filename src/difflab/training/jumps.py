"""The student's DDIM jumps (training/distill.py): the sampler it was distilled for, the coefficients of
one jump in both output forms, and where its output means x0 rather than eps. Shared by distillation,
`digits generate` (a student's outputs become the sampler's eps here) and benchmarks/student_errors.py."""

from __future__ import annotations

import torch

from difflab.diffusion.sampling import DDIMSampler
from difflab.diffusion.schedule import NoiseSchedule


def student_sampler(schedule: NoiseSchedule, steps: int) -> DDIMSampler:
    """The sampler a student was distilled for: deterministic DDIM, trailing, no x0 clipping (its targets
    were derived through the unclipped update), final alpha 1 (the last step lands on x_0)."""
    return DDIMSampler(schedule, steps=steps, spacing="trailing", clip_x0=None, final_alpha_one=True)


def ddim_coefficients(schedule: NoiseSchedule, grid: list[int]) -> torch.Tensor:
    """(K, 2) float64 (c_x, c_eps) with x_next = c_x x_t + c_eps eps for each student step (DDIM eq. 12,
    eta 0): c_x = sqrt(a_next / a_t), c_eps = sqrt(1 - a_next) - sqrt(a_next (1 - a_t) / a_t)."""
    a = schedule.alphas_cumprod.double()
    rows = []
    for k, t in enumerate(grid):
        a_t = a[t]
        a_n = a[grid[k + 1]] if k + 1 < len(grid) else torch.tensor(1.0, dtype=torch.float64)
        rows.append(((a_n / a_t).sqrt(), (1 - a_n).sqrt() - (a_n * (1 - a_t) / a_t).sqrt()))
    return torch.tensor(rows, dtype=torch.float64)


def jump_coefficients(schedule: NoiseSchedule, grid: list[int]) -> torch.Tensor:
    """(K, 5) float64 per student step: (c_x, c_eps) of the eps form above, (d_x, d_x0) of the x0 form
    x_next = d_x x_t + d_x0 x0 (the same DDIM step written with x0: d_x = sqrt((1 - a_next) / (1 - a_t)),
    d_x0 = sqrt(a_next) - d_x sqrt(a_t)), and a_next (1 after the last step)."""
    a = schedule.alphas_cumprod.double()
    eps_form = ddim_coefficients(schedule, grid)
    rows = []
    for k, t in enumerate(grid):
        a_t = a[t]
        a_n = a[grid[k + 1]] if k + 1 < len(grid) else torch.tensor(1.0, dtype=torch.float64)
        d_x = ((1 - a_n) / (1 - a_t)).sqrt()
        rows.append((*eps_form[k].tolist(), d_x.item(), (a_n.sqrt() - d_x * a_t.sqrt()).item(), a_n.item()))
    return torch.tensor(rows, dtype=torch.float64)


def x0_output_steps(grid: list[int], prediction: str = "eps") -> list[int]:
    """Timesteps where the student's output means x0, not eps: the first (t = T-1). There sqrt(a_t) is
    0.006, so x0 = (x_t - sqrt(1 - a_t) eps) / sqrt(a_t) would need eps to 0.1 % (beyond a bf16 network:
    measured, the eps-form student's x_749 was all error); x0 itself is well-conditioned there. None for a
    v-prediction network: its eps carries x0 = sqrt(a_t) x_t - sqrt(1 - a_t) v, well-conditioned already."""
    return [] if prediction == "v" else grid[:1]


def student_output_to_eps(out: torch.Tensor, x_t: torch.Tensor, t: int, schedule: NoiseSchedule,
                          x0_steps) -> torch.Tensor:
    """The eps the DDIM sampler needs from a student output (B, C, H, W): unchanged where it is eps,
    (x_t - sqrt(a_t) x0) / sqrt(1 - a_t) at the x0 steps (float32, as the sampler's maths)."""
    if t not in x0_steps:
        return out
    a_t = schedule.alphas_cumprod[t].double()
    return ((x_t.double() - a_t.sqrt() * out.double()) / (1 - a_t).sqrt()).float()
