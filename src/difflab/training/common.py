"""What the teacher's, the student's and personalize's trainers share: the learning-rate curve, the EMA
update, condition dropout for classifier-free guidance, optimizer state stored in a checkpoint, and the
run record a checkpoint keeps of its own making."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch

from difflab.errors import DifflabError
from difflab.runtime import machine_line


@dataclass(frozen=True)
class CosineSchedule:
    """The learning-rate curve's settings alone, for a trainer without a config that carries them
    (personalize); TrainConfig and DistillConfig carry the same four fields."""

    lr: float
    steps: int
    warmup_steps: int
    min_lr_ratio: float


def lr_at(step: int, cfg, total: int | None = None) -> float:
    """Linear warm-up, then cosine from lr down to min_lr_ratio * lr at step `total` (default cfg.steps).
    `cfg`: any config with lr, warmup_steps, min_lr_ratio and steps (CosineSchedule, TrainConfig,
    DistillConfig)."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    total = cfg.steps if total is None else total
    p = min(1.0, (step - cfg.warmup_steps) / max(1, total - cfg.warmup_steps))
    return cfg.lr * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * p)))


def run_record(wall_s: float, legs: int, processes: int | None = None, device=None) -> dict:
    """The keys every run's `train_run` record shares (`difflab digits info` reads them): training seconds
    over all legs, legs (processes that made it; 1 = one uninterrupted curve), machine (with the card's
    name when `device` is CUDA) and date."""
    return {"wall_s": round(wall_s, 1), "legs": legs, "machine": machine_line(processes, device),
            "date": time.strftime("%Y-%m-%d")}


def ema_warmup(step: int) -> float:
    """The EMA's decay cap at 0-based update `step`: (1 + step) / (10 + step) (TensorFlow's
    ExponentialMovingAverage with num_updates). It reaches a decay D only at step 9 / (1 - D) - 10: 0.999
    at step 8990, so in a shorter run every decay from the cap up gives the same weights."""
    return (1 + step) / (10 + step)


def inert_decays(decays, steps: int) -> list[float]:
    """The decays a run of `steps` updates never used: above the warm-up cap at its last update (their
    EMAs are the warm-up schedule's, equal to each other bit for bit)."""
    return [d for d in decays if steps < 1 or d > ema_warmup(steps - 1)]


@torch.no_grad()
def update_ema(ema: torch.nn.Module, model: torch.nn.Module, step: int, decay: float) -> None:
    """One EMA step of `ema` towards `model` (the teacher's and the student's trainers): decay
    min(decay, ema_warmup(step)), since early weights are noise and a short horizon forgets them
    sooner; buffers are copied."""
    d = min(decay, ema_warmup(step))
    for pe, p in zip(ema.parameters(), model.parameters()):
        pe.lerp_(p, 1 - d)
    for be, b in zip(ema.buffers(), model.buffers()):
        be.copy_(b)


LOSS_WEIGHTINGS = ("eps", "min-snr")


def domain_weightings(spec: str, domains: tuple[str, ...]) -> tuple[str, ...]:
    """`--loss-weighting` -> the weighting of each domain label in order (label i: domains[i]).

    One name weights every image alike ("min-snr"); "DOMAIN=NAME,..." names each domain's own
    ("mnistm=min-snr,svhn=eps"). Why per domain: the tenth one-hour run (docs/RESULTS.md §9) found the
    plain loss better for SVHN and Min-SNR's cut of the low-noise levels better for MNIST-M.
    Raises DifflabError naming what is wrong (unknown weighting or domain, a domain missing or twice)."""
    def known(name: str) -> str:
        if name not in LOSS_WEIGHTINGS:
            raise DifflabError(f"unknown --loss-weighting {name!r} ({' or '.join(LOSS_WEIGHTINGS)}, or "
                               f"DOMAIN=WEIGHTING for each of {', '.join(domains)})")
        return name

    if "=" not in spec:
        return (known(spec),) * len(domains)
    named: dict[str, str] = {}
    for item in spec.split(","):
        domain, _, name = item.strip().partition("=")
        if domain not in domains or domain in named:
            raise DifflabError(f"--loss-weighting {spec!r}: {'unknown' if domain not in domains else 'repeated'} "
                               f"domain {domain!r} (name each of {', '.join(domains)} once)")
        named[domain] = known(name.strip())
    missing = [d for d in domains if d not in named]
    if missing:
        raise DifflabError(f"--loss-weighting {spec!r} does not say how to weight {', '.join(missing)}")
    return tuple(named[d] for d in domains)


TIMESTEP_SAMPLINGS = ("uniform", "log-snr-normal")


def draw_timesteps(alphas_cumprod: torch.Tensor, n: int, g: torch.Generator, kind: str = "uniform",
                   mean: float = -1.0, std: float = 2.5, share: float = 1.0) -> torch.Tensor:
    """n training timesteps (n,) long in [0, T) for a schedule's alphas_cumprod (T,).

    "uniform": t ~ U{0..T-1} (DDPM). "log-snr-normal": a log-SNR lambda ~ N(mean, std^2), then the t whose
    lambda_t = log(a_t / (1 - a_t)) is nearest (the ends take the tails). Why: with the linear schedule half
    of the uniform draws land at SNR < 0.1 (t > 480), where x_t is nearly pure noise and the epsilon target
    is nearly x_t itself; a normal in lambda moves training to the middle levels where a digit's shape is
    decided (Karras et al. 2022 sample log sigma = -lambda / 2 from a normal; Esser et al. 2024's
    logit-normal(0, 1) is lambda ~ N(0, 2^2)). The default N(-1, 2.5^2) keeps about 31 % of the draws at
    t > 480 (uniform: 52 %; N(0, 2^2): 13 %, and under 4 % at t > 600, where generate's 20-step DDIM takes 7 steps).
    `share` < 1 (log-snr-normal only): each draw comes from that normal with probability `share`, else
    uniformly, a mixture of the two samplings (docs/RESULTS.md §9 compares the pure ones along the guidance
    scale; no one-hour run has used a mixture yet). At 1 the generator is called exactly as before.
    """
    if kind == "uniform":
        return torch.randint(len(alphas_cumprod), (n,), generator=g)
    a = alphas_cumprod.double()
    log_snr = torch.log(a / (1 - a))  # (T,), decreasing in t
    draws = mean + std * torch.randn(n, generator=g, dtype=torch.float64)
    t = (log_snr[None, :] - draws[:, None]).abs().argmin(dim=1)
    if share < 1:
        uniform = torch.randint(len(alphas_cumprod), (n,), generator=g)
        t = torch.where(torch.rand(n, generator=g) < share, t, uniform)
    return t


def drop_conditions(digits, domains, g: torch.Generator, cfg, null_digit=10, null_domain=2):
    """Replace labels by the null token for CFG training (Ho & Salimans 2022): digits, domains (B,) long;
    `cfg`: any config with the rates drop_both, drop_digit, drop_domain (TrainConfig)."""
    u = torch.rand(len(digits), generator=g)
    both = u < cfg.drop_both
    only_digit = (u >= cfg.drop_both) & (u < cfg.drop_both + cfg.drop_digit)
    lo = cfg.drop_both + cfg.drop_digit
    only_domain = (u >= lo) & (u < lo + cfg.drop_domain)
    digits = torch.where(both | only_digit, torch.full_like(digits, null_digit), digits)
    domains = torch.where(both | only_domain, torch.full_like(domains, null_domain), domains)
    return digits, domains


def flatten_optimizer(opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], list]:
    """An optimizer's state as flat tensors `opt.{param index}.{name}` (a safetensors file holds only
    tensors) and its param groups (JSON metadata); `unflatten_optimizer` turns them back."""
    sd = opt.state_dict()
    tensors = {f"opt.{i}.{k}": torch.as_tensor(v) for i, s in sd["state"].items() for k, v in s.items()}
    return tensors, sd["param_groups"]


def unflatten_optimizer(tensors: dict[str, torch.Tensor], groups: list) -> dict:
    state: dict[int, dict] = {}
    for key, v in tensors.items():
        if key.startswith("opt."):
            _, i, name = key.split(".", 2)
            state.setdefault(int(i), {})[name] = v
    return {"state": state, "param_groups": groups}
