"""The DDIM jobs that write files: sample a noise folder to PNGs, the eta grid, and inversion.

Determinism: with eta > 0, image i draws its per-step noise from its own generator seeded from
(seed, i), so an image depends on its noise, the seed and its index only, never on --batch-size, and
every row of the eta grid sees the same noise per column.

Devices: the network runs on `model.device`; the noise files and every draw (CPU generators) are
moved there per batch, and results come back to the CPU. So the noise is the same on every device.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from difflab.ddim.config import DDIMConfig
from difflab.ddim.noise import load_noise_dir, make_noise, natural_key, save_noise, stem_names
from difflab.device import stream_generator
from difflab.diffusion.sampling import DDIMSampler
from difflab.diffusion.solvers import DPMSolverPP2M, UniPC
from difflab.errors import DifflabError
from difflab.io import IMAGE_SUFFIXES, image_files, load_image, save_png, staged_output_dir, to_uint8
from difflab.models.loaders import EpsModel


class PerImageNoise(Sequence):
    """Variance noise for a batch, one (B, C, H, W) tensor per step, drawn lazily (in step order) from
    one generator per image; so a batch of 1 and a batch of 16 give each image the same noise."""

    def __init__(self, generators: list[torch.Generator], shape: tuple[int, ...], steps: int,
                 device: torch.device | str = "cpu"):
        self.generators, self.shape, self.steps = generators, tuple(shape), steps
        self.device = torch.device(device)

    def __len__(self) -> int:
        return self.steps

    def __getitem__(self, i):
        # drawn on the CPU (the generators'), then moved: the same noise on every device
        return torch.cat([torch.randn((1, *self.shape), generator=g) for g in self.generators]).to(self.device)


def run_sampler(model: EpsModel, sampler: DDIMSampler | DPMSolverPP2M | UniPC, noise: torch.Tensor, seed: int = 0,
                batch_size: int = 16, indices: Sequence[int] | None = None, progress: bool = True,
                desc: str = "DDIM") -> torch.Tensor:
    """Denoise noise (N, C, H, W) in batches on `model.device` -> x_0 (N, C, H, W) float32 on the CPU
    (not clamped).

    indices: each image's index for its noise generator (default 0..N-1)."""
    device = getattr(model, "device", torch.device("cpu"))
    indices = list(range(len(noise))) if indices is None else list(indices)
    outs = []
    n_steps = len(sampler.timesteps)
    with tqdm(total=len(noise) * n_steps, desc=desc, unit="img-step", disable=not progress,
              dynamic_ncols=True, leave=False) as bar, torch.inference_mode():
        for start in range(0, len(noise), batch_size):
            x = noise[start:start + batch_size].to(device)
            noise_arg = ()  # the ODE solvers (no eta) draw no noise and take no variance_noise
            if getattr(sampler, "eta", 0.0) > 0:
                gens = [stream_generator(seed, i) for i in indices[start:start + batch_size]]
                noise_arg = (PerImageNoise(gens, x.shape[1:], n_steps, device),)
            x0 = sampler.sample(model, x, None, lambda _out, n=len(x): bar.update(n), *noise_arg)
            outs.append(x0.float().cpu())
    out = torch.cat(outs)
    if not torch.isfinite(out).all():
        raise DifflabError(f"{model.description}: sampling produced NaN/inf (wrong schedule or weights?)")
    return out


def sample_dir(noise_dir, out_dir, model: EpsModel, cfg: DDIMConfig, overwrite: bool = False,
               progress: bool = True) -> dict:
    """Write OUT_DIR/<stem>.png for every NOISE_DIR/<stem>.pt; return {'stems', 'seconds', 'steps'}."""
    cfg.check()
    sampler = cfg.sampler(cfg.schedule(model.schedule))
    stems, noise = load_noise_dir(noise_dir, model.sample_shape)
    # built aside and swapped in complete: a failed run leaves no OUT and keeps an old one
    with staged_output_dir(out_dir, overwrite) as out:
        t0 = time.perf_counter()
        images = run_sampler(model, sampler, noise, cfg.seed, cfg.batch_size, progress=progress,
                             desc="DDIM" if cfg.sampler_name == "ddim" else cfg.sampler_name)
        seconds = time.perf_counter() - t0
        for stem, im in zip(stems, to_uint8(images, cfg.to_pixels)):
            save_png(out / f"{stem}.png", im)
    return {"stems": stems, "seconds": seconds, "steps": len(sampler.timesteps)}


def starting_noise(model: EpsModel, noise_dir, count: int, seed: int,
                   shape: Sequence[int] | None = None) -> tuple[list[str], torch.Tensor]:
    """The first `count` noises of a folder, or `count` fresh ones from `seed` at the model's shape."""
    if noise_dir is not None:
        stems, noise = load_noise_dir(noise_dir, model.sample_shape)
        return stems[:count], noise[:count]
    shape = model.sample_shape or (tuple(shape) if shape else None)
    if shape is None:
        raise DifflabError("this model does not say its input size: pass --noise-dir (or --shape C H W)")
    return stem_names(count), make_noise(count, tuple(shape), seed)


def eta_grid(model: EpsModel, cfg: DDIMConfig, etas: Sequence[float], stems: list[str], noise: torch.Tensor,
             progress: bool = True):
    """Rows = eta values, columns = noises; returns a labelled PIL image."""
    from difflab.viz import grid

    if not etas:
        raise DifflabError("--etas: give at least one value")
    if cfg.sampler_name != "ddim":
        raise DifflabError(f"the eta grid is DDIM's (eta); got sampler {cfg.sampler_name}")
    schedule = cfg.schedule(model.schedule)
    samplers = [cfg.sampler(schedule, eta=e) for e in etas]  # validates every eta before any work
    rows = [run_sampler(model, s, noise, cfg.seed, cfg.batch_size, progress=progress, desc=f"eta={e:g}")
            for s, e in zip(samplers, etas)]
    tiles = to_uint8(torch.cat(rows), cfg.to_pixels)
    scale = max(1, -(-64 // tiles.shape[1]))  # make small images (28 px digits) readable
    return grid(tiles, ncols=len(stems), scale=scale, row_labels=[f"eta={e:g}" for e in etas],
                col_labels=[f"noise {s}" for s in stems],
                title=f"DDIM {cfg.steps} steps, {samplers[0].spacing}: {model.description}")


def load_image_dir(folder, shape: tuple[int, int, int] | None) -> tuple[list[str], torch.Tensor]:
    """Images of a folder -> (stems, (N, C, H, W) float32 in [-1, 1]); sizes must match the model's."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DifflabError(f"{folder}: image folder not found")
    files = sorted(image_files(folder), key=lambda p: natural_key(p.stem))  # img2 before img10
    if not files:
        raise DifflabError(f"{folder}: no images ({', '.join(IMAGE_SUFFIXES)}) in this folder")
    mode = "L" if shape is not None and shape[0] == 1 else "RGB"
    arrays = []
    for f in files:
        a = load_image(f, mode=mode)
        a = a[..., None] if a.ndim == 2 else a
        want = (shape[1], shape[2]) if shape is not None else arrays[0].shape[:2] if arrays else a.shape[:2]
        if a.shape[:2] != want:
            raise DifflabError(f"{f}: size {a.shape[1]}x{a.shape[0]}, expected {want[1]}x{want[0]}")
        arrays.append(a)
    x = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).float() / 127.5 - 1
    return [f.stem for f in files], x


def invert_dir(images_dir, out_dir, model: EpsModel, cfg: DDIMConfig, overwrite: bool = False,
               progress: bool = True) -> dict:
    """Invert every image to noise (OUT/<stem>.pt) with `cfg.invert_iters` fixed-point iterations per
    step, re-sample it (OUT/reconstructed/<stem>.png) and return {'stems', 'mse' (per image, 0-1
    scale), 'noise_std', 'seconds'}."""
    cfg.check()
    if cfg.sampler_name != "ddim":
        raise DifflabError(f"inversion runs the DDIM ODE backwards; got sampler {cfg.sampler_name}")
    schedule = cfg.schedule(model.schedule)
    sampler = cfg.sampler(schedule, eta=0.0)  # inversion is the deterministic ODE only
    stems, x0 = load_image_dir(images_dir, model.sample_shape)
    with staged_output_dir(out_dir, overwrite) as out:
        t0 = time.perf_counter()
        noises = []
        with tqdm(total=len(x0) * len(sampler.timesteps), desc="inverting", disable=not progress,
                  dynamic_ncols=True, leave=False) as bar, torch.inference_mode():
            for s in range(0, len(x0), cfg.batch_size):
                batch = x0[s:s + cfg.batch_size].to(model.device)
                noises.append(sampler.invert(model, batch, lambda _o, n=len(batch): bar.update(n),
                                             cfg.invert_iters).cpu())
        noise = torch.cat(noises)
        recon = run_sampler(model, sampler, noise, cfg.seed, cfg.batch_size, progress=progress,
                            desc="re-sampling")
        seconds = time.perf_counter() - t0
        for stem, z in zip(stems, noise):
            save_noise(out / f"{stem}.pt", z)
        # the images came in as pixel / 127.5 - 1, so "clamp" is the inverse mapping here, whatever --to-pixels
        for stem, im in zip(stems, to_uint8(recon, "clamp")):
            save_png(out / "reconstructed" / f"{stem}.png", im)
    err = ((recon.double() + 1) / 2).clamp(0, 1) - (x0.double() + 1) / 2
    mse = err.pow(2).flatten(1).mean(1).tolist()
    return {"stems": stems, "mse": mse, "noise_std": noise.flatten(1).std(1).tolist(), "seconds": seconds}
