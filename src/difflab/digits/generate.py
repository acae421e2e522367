"""Generate digits in the standard layout: OUT/{mnistm,svhn}/{digit}_{NNN}.png + a 10x10 grid per domain.

Determinism: all starting noise x_T is drawn up front, in layout order (domain, digit, index), from one
generator seeded with `seed`; the images are then denoised in fixed chunks of `batch_size`, each with
its own generator for any per-step noise (DDPM / eta > 0). So an image depends only on the seed and the
settings, and `chunk_for(...)` lets other tools (the reverse-process figure) replay one exactly.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from difflab.data import DOMAINS
from difflab.errors import DifflabError
from difflab.io import save_png, to_uint8
from difflab.sampling import DDIMSampler, DDPMSampler, cfg_eps_fn
from difflab.viz import grid, save_image


@dataclass
class GenerateConfig:
    per_digit: int = 50
    guidance: float = 3.0  # best accuracy and Fréchet distance of the release model (docs/RESULTS.md)
    steps: int = 20
    sampler: str = "ddim"  # "ddim" or "ddpm"
    eta: float = 0.0
    seed: int = 0
    batch_size: int = 250
    bf16: bool = True  # network in bf16 autocast (~2.5x faster on CPU); sampler maths stays float32
    guide: str = "digit"  # "digit": uncond = (null digit, same domain); "both": null digit and null domain

    def check(self) -> None:
        if self.per_digit < 1:
            raise DifflabError(f"--per-digit must be at least 1, got {self.per_digit}")
        if self.guidance < 0:
            raise DifflabError(f"--guidance must be >= 0, got {self.guidance}")
        if self.sampler not in ("ddim", "ddpm"):
            raise DifflabError(f"unknown sampler {self.sampler!r} (ddim or ddpm)")
        if self.guide not in ("digit", "both"):
            raise DifflabError(f"unknown guidance target {self.guide!r} (digit or both)")
        if self.batch_size < 1:
            raise DifflabError(f"--batch-size must be at least 1, got {self.batch_size}")


def layout(cfg: GenerateConfig, domains=DOMAINS) -> list[tuple[str, int, int]]:
    """Every image as (domain, digit, k) with k from 1, in generation order."""
    return [(m, d, k) for m in domains for d in range(10) for k in range(1, cfg.per_digit + 1)]


def make_sampler(cfg: GenerateConfig, schedule):
    if cfg.sampler == "ddpm":
        return DDPMSampler(schedule, steps=cfg.steps)
    return DDIMSampler(schedule, steps=cfg.steps, eta=cfg.eta, clip_x0=1.0)


class TimedModel(torch.nn.Module):
    """Wraps the UNet to count time spent in the network (for the time split report)."""

    def __init__(self, model: torch.nn.Module, bf16: bool):
        super().__init__()
        self.model, self.bf16, self.seconds = model, bf16, 0.0

    def forward(self, *args):
        t0 = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.bf16):
            out = self.model(*args).float()
        self.seconds += time.perf_counter() - t0
        return out


def sample_chunks(model, schedule, cfg: GenerateConfig, domains=DOMAINS, progress: bool = True,
                  callback=None):
    """Yield (items, images (B, 3, 28, 28) in [-1, 1]) chunk by chunk; `callback(chunk_index, StepOutput)`
    sees every step (used to draw the reverse process)."""
    cfg.check()
    items = layout(cfg, domains)
    g = torch.Generator().manual_seed(cfg.seed)
    x_T = torch.randn((len(items), 3, 28, 28), generator=g)
    sampler = make_sampler(cfg, schedule)
    n_chunks = (len(items) + cfg.batch_size - 1) // cfg.batch_size
    bar = tqdm(total=n_chunks * len(sampler.timesteps), desc="sampling", disable=not progress,
               dynamic_ncols=True)
    for c in range(n_chunks):
        chunk = items[c * cfg.batch_size:(c + 1) * cfg.batch_size]
        digits = torch.tensor([d for _, d, _ in chunk])
        doms = torch.tensor([DOMAINS.index(m) for m, _, _ in chunk])
        eps_fn = cfg_eps_fn(model, digits, doms, cfg.guidance, null_domain=None if cfg.guide == "digit" else 2)
        gc = torch.Generator().manual_seed(cfg.seed * 100_003 + c + 1)

        def step_cb(out, c=c):
            bar.update(1)
            if callback is not None:
                callback(c, out)

        with torch.inference_mode():
            x0 = sampler.sample(eps_fn, x_T[c * cfg.batch_size:c * cfg.batch_size + len(chunk)], gc, step_cb)
        yield chunk, x0.clamp(-1, 1)
    bar.close()


@contextlib.contextmanager
def staged_output_dir(out_dir, overwrite: bool):
    """Build the output in a hidden sibling folder; move it into place only when complete, so a failure
    never leaves a half-written OUT, and an existing one is replaced only on success."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise DifflabError(f"{out}: exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise DifflabError(f"{out}: output folder is not empty (pass --overwrite to replace it)")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        stage = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    except OSError as e:
        raise DifflabError(f"{out}: output folder is not writable ({e.strerror})") from None
    try:
        yield stage
        if out.exists():
            old = out.parent / f".{out.name}.old-{os.getpid()}"
            os.replace(out, old)
            os.replace(stage, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(stage, out)
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def generate(out_dir, model, schedule, cfg: GenerateConfig, overwrite: bool = False, progress: bool = True
             ) -> dict:
    """Write the standard layout; return timings {'total_s', 'network_s', 'other_s', 'images'}."""
    cfg.check()
    t0 = time.perf_counter()
    timed = TimedModel(model, cfg.bf16)
    with staged_output_dir(out_dir, overwrite) as stage:
        tiles: dict[str, list[np.ndarray]] = {m: [] for m in DOMAINS}
        for chunk, x0 in sample_chunks(timed, schedule, cfg, progress=progress):
            pixels = to_uint8(x0)
            for (m, d, k), img in zip(chunk, pixels):
                save_png(stage / m / f"{d}_{k:03d}.png", img)
                if k <= 10:
                    tiles[m].append(img)
        for m in DOMAINS:
            ncols = min(10, cfg.per_digit)
            save_image(grid(tiles[m], ncols, scale=2, row_labels=[str(d) for d in range(10)],
                            title=f"{m}: guidance {cfg.guidance}, {cfg.sampler} {cfg.steps} steps, seed {cfg.seed}"),
                       stage / f"{m}_grid.png")
    total = time.perf_counter() - t0
    return {"total_s": total, "network_s": timed.seconds, "other_s": total - timed.seconds,
            "images": len(layout(cfg))}
