"""Phase 1 of distillation (training/distill.py): the teacher's guided DDIM trajectories, kept at the
student's grid points and written one chunk at a time so the phase resumes where it stopped."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from tqdm import tqdm

from difflab.device import autocast, move, randn, resolve_device, stream_generator
from difflab.diffusion.sampling import DDIMSampler
from difflab.diffusion.schedule import NoiseSchedule, make_timesteps
from difflab.errors import DifflabError
from difflab.io import load_checkpoint, save_checkpoint

if TYPE_CHECKING:
    from difflab.training.config import DistillConfig


def student_timesteps(schedule: NoiseSchedule, steps: int) -> list[int]:
    """The student's DDIM grid (trailing spacing: starts at T-1, where x_T ~ N(0, I) holds best)."""
    return make_timesteps(schedule.num_train_timesteps, steps, "trailing").tolist()


def guided_eps(model, x, t: int, digits, domains, w: torch.Tensor, guide: str, bf16: bool) -> torch.Tensor:
    """Teacher CFG with a per-row scale w (B,): eps_u + w (eps_c - eps_u), one batched pass of 2B rows.
    x (B, 3, 28, 28) and the labels on the teacher's device; autocast follows that device."""
    B = x.shape[0]
    null_d = torch.full_like(digits, 10)
    null_m = domains if guide == "digit" else torch.full_like(domains, 2)
    tt = torch.full((2 * B,), t, dtype=torch.long, device=x.device)
    with autocast(x.device, enabled=bf16):
        eps = model(torch.cat([x, x]), tt, torch.cat([digits, null_d]), torch.cat([domains, null_m])).float()
    cond, uncond = eps[:B], eps[B:]
    return uncond + w.view(-1, 1, 1, 1) * (cond - uncond)


def make_trajectories(cfg: DistillConfig, teacher, schedule: NoiseSchedule, progress: bool = True) -> Path:
    """Phase 1: write OUT/trajectories/chunk_NNNN.safetensors (skipping chunks already there).

    Each chunk: x (n, K+1, 3, 28, 28) float32 at the student's grid points, digit (n,), domain (n,), w (n,).
    The teacher is moved to cfg.device (in place) and runs there; the draws are made on the CPU.
    """
    device = resolve_device(cfg.device)
    move(teacher, device)
    folder = Path(cfg.out_dir) / "trajectories"
    sampler = DDIMSampler(schedule, steps=cfg.teacher_steps, spacing="trailing", clip_x0=1.0)
    every = cfg.teacher_steps // cfg.student_steps
    grid = student_timesteps(schedule, cfg.student_steps)
    if sampler.timesteps.tolist()[::every] != grid:
        raise DifflabError(f"distill: teacher grid {sampler.timesteps.tolist()} does not contain the student's {grid}")
    n_chunks = math.ceil(cfg.trajectories / cfg.traj_batch)
    bar = tqdm(total=n_chunks, desc="teacher trajectories", disable=not progress, dynamic_ncols=True)
    for c in range(n_chunks):
        path = folder / f"chunk_{c:04d}.safetensors"
        bar.update(1)
        if path.exists():
            continue
        n = min(cfg.traj_batch, cfg.trajectories - c * cfg.traj_batch)
        g = stream_generator(cfg.seed, c)
        digits = torch.randint(10, (n,), generator=g)
        domains = torch.randint(2, (n,), generator=g)
        w = cfg.guidance_min + (cfg.guidance_max - cfg.guidance_min) * torch.rand(n, generator=g)
        x_T = randn((n, 3, 28, 28), g, device)
        states = [x_T]
        # after denoising ts[i], x sits at ts[i+1]: keep it where the student's grid has a point
        ts = sampler.timesteps.tolist()
        keep_at = {ts[i] for i in range(every - 1, cfg.teacher_steps, every)}

        def keep(out, states=states, keep_at=keep_at):
            if out.t in keep_at:
                states.append(out.prev_sample)

        with torch.inference_mode():
            sampler.sample(lambda x, t, d=digits.to(device), m=domains.to(device), w=w.to(device):
                           guided_eps(teacher, x, t, d, m, w, cfg.guide, cfg.bf16), x_T, None, keep)
        x = torch.stack(states, dim=1).cpu()
        if not torch.isfinite(x).all():
            raise DifflabError(f"distill: the teacher produced non-finite values in chunk {c}")
        save_checkpoint(path, {"x": x, "digit": digits, "domain": domains, "w": w},
                        {"kind": "difflab-distill-trajectories", "grid": grid})
    bar.close()
    return folder


def load_trajectories(folder, grid: list[int]) -> dict[str, torch.Tensor]:
    """All chunks of a trajectories folder made for `grid`, concatenated: x (N, K+1, 3, 28, 28), digit,
    domain, w (N,)."""
    parts = [load_checkpoint(p) for p in sorted(Path(folder).glob("chunk_*.safetensors"))]
    if not parts:
        raise DifflabError(f"{folder}: no trajectory chunks")
    for _, meta in parts:
        if meta.get("grid") != grid:
            raise DifflabError(f"{folder}: trajectories were made for grid {meta.get('grid')}, not {grid}")
    return {k: torch.cat([t[k] for t, _ in parts]) for k in ("x", "digit", "domain", "w")}
