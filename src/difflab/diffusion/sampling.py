"""Samplers: one DDIM `step()` (with eta), the DDPM ancestral step, loops, and classifier-free guidance.

A model enters as `eps_fn(x_t, t) -> eps`: x_t (B, C, H, W) float32 in roughly [-1, 1] scale, t an int,
eps of the same shape. Loops are generators yielding a `StepOutput` per step (x_{t-1} and predicted x_0)
so callers can draw the reverse process, show progress, or stop early; `sample()` runs one to the end.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import torch

from difflab.checks import parse_list
from difflab.device import randn
from difflab.diffusion.schedule import NoiseSchedule, make_timesteps
from difflab.errors import DifflabError

EpsFn = Callable[[torch.Tensor, int], torch.Tensor]


@dataclass
class StepOutput:
    t: int  # the timestep just denoised
    prev_sample: torch.Tensor  # x_{t_prev}
    pred_original_sample: torch.Tensor  # predicted x_0 at this step


def run_to_end(steps: Iterator[StepOutput], callback: Callable[[StepOutput], None] | None = None
               ) -> torch.Tensor:
    """Drive a sampler's `iterate` generator to its end, showing each step to `callback`; return the last
    x (B, C, H, W), not clamped. Every sampler's `sample()` is this loop."""
    out = None
    for out in steps:
        if callback is not None:
            callback(out)
    return out.prev_sample


@dataclass
class DDIMSampler:
    """DDIM (Song et al. 2021) over `steps` of the schedule's T timesteps.

    eta=0 is the deterministic ODE sampler; eta=1 gives DDPM's posterior variance (Ho et al. 2020).
    `final_alpha_one` picks alpha_bar for the step after the last: 1.0 (diffusers' set_alpha_to_one)
    or alpha_bar[0]. `clip_x0` clips predicted x0 to [-c, c] (None: no clipping).

    Every per-step scalar is computed once, with the same float32 operations in the same order as
    diffusers' DDIMScheduler, so both give bit-identical samples; the loop then does only the 6-8
    full-tensor operations of the update itself.
    """

    schedule: NoiseSchedule = field(default_factory=NoiseSchedule)
    steps: int = 50
    spacing: str = "leading"
    offset: int = 0
    eta: float = 0.0
    clip_x0: float | None = None
    final_alpha_one: bool = True

    def __post_init__(self):
        if not 0.0 <= self.eta <= 1.0:  # also rejects NaN
            raise DifflabError(f"eta must be in [0, 1], got {self.eta}")
        if self.clip_x0 is not None and not self.clip_x0 > 0:
            raise DifflabError(f"clip_x0 must be > 0 (or None for no clipping), got {self.clip_x0}")
        self.timesteps = make_timesteps(self.schedule.num_train_timesteps, self.steps, self.spacing,
                                        self.offset)
        a = self.schedule.alphas_cumprod
        self._a32 = a  # float32, as diffusers' alphas_cumprod
        self._final = torch.tensor(1.0) if self.final_alpha_one else a[0]
        self._coefs: dict[tuple[int, float], tuple[float, ...]] = {}

    def prev_timestep(self, t: int) -> int:
        # As diffusers' DDIMScheduler: t - T // S, whatever the spacing (for parity with its outputs).
        return t - self.schedule.num_train_timesteps // self.steps

    def _alpha(self, t: int) -> torch.Tensor:
        """alpha_bar_t as a float32 0-dim tensor; t < 0 means "after the last step"."""
        return self._a32[t] if t >= 0 else self._final

    def coefficients(self, t: int) -> tuple[float, ...]:
        """(sqrt(1-a_t), sqrt(a_t), sqrt(a_prev), direction coef, sigma_t) for the step from t.

        Computed on float32 0-dim tensors exactly as diffusers does, then kept as Python floats (each
        exactly a float32 value, so `tensor * c` rounds the same) because per-step tensor indexing and
        scalar maths cost more than the update itself at small batch sizes.
        """
        key = (int(t), float(self.eta))
        if key not in self._coefs:
            a_t, a_prev = self._alpha(key[0]), self._alpha(self.prev_timestep(key[0]))
            b_t = 1 - a_t
            # DDIM eq. 16: sigma_t(eta) = eta * sqrt((1 - a_prev)/(1 - a_t)) * sqrt(1 - a_t / a_prev)
            variance = (1 - a_prev) / b_t * (1 - a_t / a_prev)
            std = self.eta * variance**0.5
            direction = (1 - a_prev - std**2) ** 0.5  # eq. 12, "direction pointing to x_t"
            self._coefs[key] = tuple(float(v) for v in (b_t**0.5, a_t**0.5, a_prev**0.5, direction, std))
        return self._coefs[key]

    def step(self, eps: torch.Tensor, t: int, x_t: torch.Tensor, generator: torch.Generator | None = None,
             variance_noise: torch.Tensor | None = None) -> StepOutput:
        """One DDIM update x_t -> x_{t_prev}; eps, x_t (B, C, H, W) float32.

        With eta > 0, `variance_noise` (same shape, ~N(0, I)) is used if given, else drawn from
        `generator` exactly as diffusers' randn_tensor draws it.
        """
        c_eps, sqrt_a, sqrt_a_prev, c_dir, std = self.coefficients(t)
        # DDIM eq. 12, first term: the "predicted x0" from x_t and eps
        x0 = (x_t - c_eps * eps) / sqrt_a
        if self.clip_x0 is not None:
            x0 = x0.clamp(-self.clip_x0, self.clip_x0)
        prev = sqrt_a_prev * x0 + c_dir * eps
        if self.eta > 0:
            # DDIM eq. 12, third term: random noise sigma_t * eps_t
            if variance_noise is None:
                # drawn on the generator's device and moved: a CPU generator gives the same noise anywhere
                variance_noise = randn(x_t.shape, generator, x_t.device, x_t.dtype)
            prev = prev + std * variance_noise
        return StepOutput(int(t), prev, x0)

    def iterate(self, eps_fn: EpsFn, x_T: torch.Tensor, generator: torch.Generator | None = None,
                variance_noise: Sequence[torch.Tensor] | None = None) -> Iterator[StepOutput]:
        """Yield a StepOutput for each timestep, from x_T (B, C, H, W) ~ N(0, I).

        variance_noise: optional, one (B, C, H, W) tensor per step (for eta > 0), to replay the exact
        noise of another implementation; otherwise noise comes from `generator`.
        """
        if variance_noise is not None and len(variance_noise) != len(self.timesteps):
            raise DifflabError(f"variance_noise has {len(variance_noise)} tensors for "
                               f"{len(self.timesteps)} steps")
        x = x_T
        for i, t in enumerate(self.timesteps.tolist()):
            noise = variance_noise[i] if variance_noise is not None else None
            out = self.step(eps_fn(x, t), t, x, generator, noise)
            x = out.prev_sample
            yield out

    def sample(self, eps_fn: EpsFn, x_T: torch.Tensor, generator: torch.Generator | None = None,
               callback: Callable[[StepOutput], None] | None = None,
               variance_noise: Sequence[torch.Tensor] | None = None) -> torch.Tensor:
        """Run `iterate` to the end; return x_0 (B, C, H, W), not clamped."""
        return run_to_end(self.iterate(eps_fn, x_T, generator, variance_noise), callback)

    def invert(self, eps_fn: EpsFn, x0: torch.Tensor, callback: Callable[[StepOutput], None] | None = None,
               fixed_point_iters: int = 1) -> torch.Tensor:
        """Run the deterministic (eta=0) DDIM ODE backwards: x_0 (B, C, H, W) in [-1, 1] -> x_T.

        DDIM sec. 4.3 / eq. 13, one step per sampling timestep, from level t - T//S up to level t. The
        sampler's step down from t uses eps(x_t, t), and x_t is the unknown, so inversion must guess it:
        - fixed_point_iters=0: the classic first-order step, eps(x_{t-T//S}, t) (diffusers'
          DDIMInverseScheduler, whose scalars this follows bit for bit). One network call per step.
        - k >= 1: solve x_t = up(x_{t-T//S}, eps(x_t, t)) by k fixed-point iterations, started from the
          eps of the previous step (no call). k calls per step, +1 for the first step; so k = 1 costs
          what the classic step costs, and on our digit model its round trip is ~100x more exact
          (docs/results/ddim.md); each further iteration shrinks the error again while it converges.
        Predicted x0 is never clipped here (that would break the ODE). `callback` sees (t, x at level t,
        predicted x0) after each step.
        """
        if fixed_point_iters < 0:
            raise DifflabError(f"fixed_point_iters must be >= 0, got {fixed_point_iters}")
        ts = self.timesteps.flip(0).tolist()
        x = x0
        eps = eps_fn(x0, ts[0]) if fixed_point_iters else None
        for t in ts:
            a = self._alpha(self.prev_timestep(t)), self._alpha(t)
            if fixed_point_iters == 0:
                x, x0_pred = self._up(x, eps_fn(x, t), *a)
            else:
                y, x0_pred = self._up(x, eps, *a)  # eps of the step below: a free first guess
                for _ in range(fixed_point_iters):
                    eps = eps_fn(y, t)
                    y, x0_pred = self._up(x, eps, *a)
                x = y
            if callback is not None:
                callback(StepOutput(t, x, x0_pred))
        return x

    @staticmethod
    def _up(x: torch.Tensor, eps: torch.Tensor, a_from: torch.Tensor, a_to: torch.Tensor):
        """One inverse DDIM step from level a_from up to a_to with a given eps -> (x_to, predicted x0)."""
        x0_pred = (x - (1 - a_from) ** 0.5 * eps) / a_from**0.5
        return a_to**0.5 * x0_pred + (1 - a_to) ** 0.5 * eps, x0_pred


@dataclass
class DDPMSampler:
    """DDPM ancestral sampling (Ho et al. 2020, Algorithm 2) on a (possibly respaced) timestep subset.

    With steps < T the chain uses the respaced betas 1 - a_bar_t / a_bar_prev (Nichol & Dhariwal 2021).
    """

    schedule: NoiseSchedule = field(default_factory=NoiseSchedule)
    steps: int | None = None  # None: all T steps
    clip_x0: float | None = 1.0

    def __post_init__(self):
        T = self.schedule.num_train_timesteps
        self.timesteps = make_timesteps(T, self.steps or T, "leading")

    def iterate(self, eps_fn: EpsFn, x_T: torch.Tensor, generator: torch.Generator | None = None
                ) -> Iterator[StepOutput]:
        a = self.schedule.alphas_cumprod
        ts = self.timesteps.tolist()
        x = x_T
        for i, t in enumerate(ts):
            a_t = a[t]
            a_prev = a[ts[i + 1]] if i + 1 < len(ts) else torch.tensor(1.0)
            beta = 1 - a_t / a_prev
            eps = eps_fn(x, t)
            x0 = (x - (1 - a_t).sqrt() * eps) / a_t.sqrt()  # DDPM eq. 15
            if self.clip_x0 is not None:
                x0 = x0.clamp(-self.clip_x0, self.clip_x0)
            # posterior q(x_{t-1} | x_t, x0): mean and variance, DDPM eq. 6-7
            coef_x0 = a_prev.sqrt() * beta / (1 - a_t)
            coef_xt = (1 - beta).sqrt() * (1 - a_prev) / (1 - a_t)
            mean = coef_x0 * x0 + coef_xt * x
            if i + 1 < len(ts):
                var = beta * (1 - a_prev) / (1 - a_t)
                z = randn(x.shape, generator, x.device, x.dtype)  # CPU generator: same noise on any device
                x = mean + var.sqrt() * z
            else:
                x = mean  # no noise at the last step (Algorithm 2, line 4)
            yield StepOutput(t, x, x0)

    def sample(self, eps_fn: EpsFn, x_T: torch.Tensor, generator: torch.Generator | None = None,
               callback: Callable[[StepOutput], None] | None = None) -> torch.Tensor:
        return run_to_end(self.iterate(eps_fn, x_T, generator), callback)


def check_guidance_interval(interval, num_train_timesteps: int | None = None) -> tuple[int, int]:
    """Validate (LO, HI), inclusive integer timesteps with 0 <= LO <= HI (< T if given); DifflabError if not."""
    if not (isinstance(interval, (tuple, list)) and len(interval) == 2
            and all(isinstance(v, int) and not isinstance(v, bool) for v in interval)):
        raise DifflabError(f"guidance interval must be two integer timesteps (LO, HI), got {interval!r}")
    lo, hi = interval
    if lo < 0 or lo > hi:
        raise DifflabError(f"guidance interval {lo},{hi}: need 0 <= LO <= HI")
    if num_train_timesteps is not None and hi >= num_train_timesteps:
        raise DifflabError(f"guidance interval {lo},{hi}: HI must be below the {num_train_timesteps} timesteps")
    return lo, hi


def parse_guidance_interval(text: str, num_train_timesteps: int | None = None) -> tuple[int, int]:
    """"LO,HI" (inclusive timesteps, e.g. "200,800") -> (LO, HI); malformed text, non-integers (1.5, nan),
    negative values, LO > HI or HI >= num_train_timesteps raise a one-line DifflabError."""
    malformed = DifflabError(f"guidance interval must look like LO,HI (two integer timesteps), got {text!r}")
    try:  # the one comma-list reader; its int() rejects "1.5", "nan", "inf", ""
        interval = parse_list(str(text), int, "guidance_interval", "200,800")
    except DifflabError:
        raise malformed from None  # one message for both ways to miss the LO,HI shape (syntax, count)
    if len(interval) != 2:
        raise malformed
    return check_guidance_interval(tuple(interval), num_train_timesteps)


def cfg_eps_fn(model: torch.nn.Module, digits: torch.Tensor, domains: torch.Tensor, guidance: float,
               null_digit: int = 10, null_domain: int | None = 2, *,
               guidance_interval: tuple[int, int] | None = None, num_train_timesteps: int | None = None) -> EpsFn:
    """Classifier-free guidance (Ho & Salimans 2022) as an eps_fn over a conditional model.

    eps = eps_uncond + w * (eps_cond - eps_uncond), with both predictions from ONE batched forward pass
    of 2B rows. w=1 is the conditional model, w=0 the unconditional one (each then needs one pass only).
    digits, domains: (B,) long labels. null_domain=None keeps the domain in the "unconditional" branch,
    so only the digit is guided (the domain is then followed at w=1 and not over-amplified).
    guidance_interval (LO, HI): guide only at timesteps LO <= t <= HI and use the conditional model alone
    (w=1, one pass of B rows) elsewhere (Kynkaanniemi et al. 2024: guidance at the noisiest steps costs
    diversity, at the cleanest it does little); validated against num_train_timesteps if given.
    """
    B = digits.shape[0]
    null_d = torch.full_like(digits, null_digit)
    null_m = domains if null_domain is None else torch.full_like(domains, null_domain)
    lo, hi = (None, None) if guidance_interval is None else check_guidance_interval(guidance_interval,
                                                                                      num_train_timesteps)

    def eps_fn(x: torch.Tensor, t: int) -> torch.Tensor:
        # timesteps are made where x lives (the labels must be there too: the caller's job)
        if guidance == 1.0 or (lo is not None and not lo <= t <= hi):
            return model(x, torch.full((B,), t, dtype=torch.long, device=x.device), digits, domains)
        if guidance == 0.0:
            return model(x, torch.full((B,), t, dtype=torch.long, device=x.device), null_d, null_m)
        tt = torch.full((2 * B,), t, dtype=torch.long, device=x.device)
        eps = model(torch.cat([x, x]), tt, torch.cat([digits, null_d]), torch.cat([domains, null_m]))
        cond, uncond = eps[:B], eps[B:]
        return uncond + guidance * (cond - uncond)

    return eps_fn
