"""`difflab digits reverse OUT.png`: the reverse process of one generated digit, as two rows of frames:
x_t at chosen t, and the model's predicted x_0 at the same steps.

It follows the *same* trajectory `digits generate` used for image (domain, digit, k=1) with the same seed
and settings: it runs `generate.sample_chunks` itself and records the chunk holding that image, so the
last frame is pixel-identical to `{digit}_001.png`. The whole chunk is replayed, not the image alone,
because the per-step noise (DDPM, eta > 0) is drawn per chunk and a different batch size may change
float rounding; the network is skipped for the chunks before it.

Labels use DDPM's t (Ho et al. 2020): x_T is the pure noise the sampler starts from at t = T, x_0 the
final image. The network's timestep index k (0-based, as in diffusers) denoises x at level t = k + 1, so
25 DDIM steps (indices 960, 920, ..., 0) visit t = 961, 921, ..., 1 and then 0. Each requested t shows
the visited level nearest it, labelled with its real t.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from difflab.checks import check_digit, parse_list
from difflab.data import DOMAINS
from difflab.digits.generate import GenerateConfig, TimedModel, layout, make_sampler, resolve, sample_chunks
from difflab.errors import DifflabError
from difflab.io import to_uint8

DEFAULT_TIMESTEPS = (1000, 500, 200, 100, 50, 0)


def parse_timesteps(text: str | list, num_train_timesteps: int) -> list[int]:
    """'1000,500,0' (or a list) -> [1000, 500, 0], high to low; refuse values outside [0, T], repeats and
    an unsorted list (either order is accepted)."""
    ts = parse_list(text, int, "timesteps", "1000,500,0")
    if not ts:
        raise DifflabError("--timesteps: give at least one timestep")
    T = num_train_timesteps
    bad = [t for t in ts if not 0 <= t <= T]
    if bad:
        raise DifflabError(f"--timesteps: {bad[0]} is outside [0, {T}] (T = the model's training steps)")
    if len(set(ts)) != len(ts):
        raise DifflabError(f"--timesteps: {text!r} repeats a value")
    if ts != sorted(ts, reverse=True) and ts != sorted(ts):
        raise DifflabError(f"--timesteps: {text!r} is not sorted (give them high to low, e.g. 1000,500,0)")
    return sorted(ts, reverse=True)


@dataclass
class Trajectory:
    """Every level one image visits: levels[i] is DDPM's t, x[i] / x0[i] (3, 28, 28) float32 are x_t and
    the predicted x_0 there (at t = 0 both are the final image)."""

    levels: list[int]
    x: list[torch.Tensor]
    x0: list[torch.Tensor]

    def nearest(self, requested: list[int]) -> list[int]:
        """Index of the visited level nearest each requested t (ties: the noisier one)."""
        return [min(range(len(self.levels)), key=lambda i: (abs(self.levels[i] - t), -self.levels[i]))
                for t in requested]


class _SkipOtherChunks(torch.nn.Module):
    """The model for chunks we replay; zeros for the others (no network cost). sample_chunks calls the
    model once per step, so call i belongs to chunk i // steps. It also keeps the first input of each
    wanted chunk: x_T, which the step callbacks never show."""

    def __init__(self, model: torch.nn.Module, wanted: set[int], steps: int, chunk_len: dict[int, int]):
        super().__init__()
        self.model, self.wanted, self.steps, self.chunk_len = model, wanted, steps, chunk_len
        self.calls, self.x_T = 0, {}

    def forward(self, x, *args):
        c, i = divmod(self.calls, self.steps)
        self.calls += 1
        if c not in self.wanted:
            return torch.zeros_like(x)
        if i == 0:  # with guidance the batch is [x, x]: the first rows are x
            self.x_T[c] = x[:self.chunk_len[c]].clone()
        return self.model(x, *args)


def trajectories(model, schedule, cfg: GenerateConfig, digit: int, domains=DOMAINS, progress: bool = True
                 ) -> dict[str, Trajectory]:
    """Replay `digits generate` for image (domain, digit, 1) of each domain -> {domain: Trajectory}."""
    cfg.check()
    check_digit("digit", digit)
    items = layout(cfg)  # generate always lays out both domains: positions depend on it
    where = {m: divmod(items.index((m, digit, 1)), cfg.batch_size) for m in domains}  # (chunk, row)
    wanted = {c for c, _ in where.values()}
    cfg = resolve(cfg, model)
    sampler_ts = make_sampler(cfg, schedule, model).timesteps.tolist()
    chunk_len = {c: len(items[c * cfg.batch_size:(c + 1) * cfg.batch_size]) for c in wanted}
    net = _SkipOtherChunks(TimedModel(model, cfg.bf16), wanted, len(sampler_ts), chunk_len)
    steps: dict[int, list] = {c: [] for c in wanted}

    def record(c, out):
        if c in wanted:
            steps[c].append(out)

    for c, _ in enumerate(sample_chunks(net, schedule, cfg, progress=progress, callback=record)):
        if c >= max(wanted):
            break  # the later chunks are not needed
    levels = [t + 1 for t in sampler_ts] + [0]
    result = {}
    for m, (c, row) in where.items():
        outs = steps[c]
        x = [net.x_T[c][row]] + [o.prev_sample[row] for o in outs]
        x0 = [o.pred_original_sample[row] for o in outs] + [outs[-1].prev_sample[row]]
        # the callbacks saw the device's tensors: the figure works on CPU copies
        result[m] = Trajectory(levels, [v.float().cpu() for v in x], [v.float().cpu() for v in x0])
    return result


@dataclass
class ReverseFigure:
    image: object  # PIL image of the strip
    levels: list[int]  # the real t of each column
    frames: dict  # {domain: {"x": (F, 28, 28, 3) uint8, "x0": (F, 28, 28, 3) uint8}}


def reverse_figure(model, schedule, cfg: GenerateConfig, digit: int = 0, domains=DOMAINS,
                   timesteps=DEFAULT_TIMESTEPS, progress: bool = True) -> ReverseFigure:
    """The labelled strip: per domain a row of x_t and a row of predicted x_0, one column per requested t.

    Pixels map as `digits generate` saves them, (x + 1) / 2 clipped, so the last column of a request
    ending in 0 equals the generated PNG exactly.
    """
    from difflab.viz import grid

    ts = parse_timesteps(timesteps, schedule.num_train_timesteps)
    trajs = trajectories(model, schedule, cfg, digit, domains, progress)
    first = next(iter(trajs.values()))
    idx = first.nearest(ts)
    levels = [first.levels[i] for i in idx]
    frames, tiles, rows = {}, [], []
    for m, tr in trajs.items():
        x = to_uint8(torch.stack([tr.x[i] for i in idx]))
        x0 = to_uint8(torch.stack([tr.x0[i] for i in idx]))
        frames[m] = {"x": x, "x0": x0}
        tiles += [*x, *x0]
        rows += [f"{m} x_t", f"{m} pred. x_0"]
    title = (f"reverse process of digit {digit} (image {digit}_001): guidance {cfg.guidance:g}, "
             f"{cfg.sampler} {cfg.steps} steps, seed {cfg.seed}")
    image = grid(np.stack(tiles), ncols=len(idx), scale=3, row_labels=rows,
                 col_labels=[f"t={t}" for t in levels], title=title)
    return ReverseFigure(image, levels, frames)


def check_output_png(path, overwrite: bool):
    """Refuse a path that is not a .png, or an existing file unless overwrite (checked before any work)."""
    from pathlib import Path

    path = Path(path)
    if path.suffix.lower() != ".png":
        raise DifflabError(f"{path}: the output must be a .png file")
    if path.is_dir():
        raise DifflabError(f"{path}: is a folder, expected a .png file name")
    if path.exists() and not overwrite:
        raise DifflabError(f"{path}: exists (pass --overwrite to replace it)")
    return path
