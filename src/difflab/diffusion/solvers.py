"""Few-step ODE solvers beside DDIM: DPM-Solver++(2M) and UniPC (bh2), plus `make_sampler` for all four.

Both solve the diffusion ODE in log-SNR time lambda = log(alpha_t / sigma_t) with the model's data
prediction x0 = (x_t - sigma_t eps) / alpha_t, reusing earlier steps' predictions instead of extra network
calls: ONE `eps_fn(x_t, t)` per step, like DDIM. x_t (B, C, H, W) float32 on the [-1, 1] image scale.

Every per-step scalar is computed once, with the same float32 operations as diffusers' schedulers
(DPMSolverMultistepScheduler with algorithm_type="dpmsolver++", solver_order=2; UniPCMultistepScheduler
with its defaults), and kept as a Python float (exactly a float32 value, so `tensor * c` rounds the same):
both give the same samples to float32 rounding, and the loop does only the tensor updates.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from numbers import Integral

import numpy as np
import torch

from difflab.diffusion.sampling import DDIMSampler, DDPMSampler, EpsFn, StepOutput, run_to_end
from difflab.diffusion.schedule import SPACINGS, NoiseSchedule, make_timesteps
from difflab.errors import DifflabError

MULTISTEP_SOLVERS = ("dpmpp-2m", "unipc")  # the high-order solvers: linspace spacing, optional Karras sigmas
SAMPLERS = ("ddim", "ddpm") + MULTISTEP_SOLVERS


def solver_timesteps(num_train_timesteps: int, steps: int, spacing: str = "linspace") -> np.ndarray:
    """Descending int64 timesteps (S,) as diffusers' DPM-Solver and UniPC schedulers place them.

    linspace and leading put S+1 points on [0, T) and drop the last (t=0), so they differ from DDIM's
    (e.g. T=1000, S=10: linspace 999, 899, ..., 100; leading 900, 810, ..., 90); trailing is DDIM's
    (999, 899, ..., 99). For the few S where diffusers' trailing arange returns S+1 values (61, 103, ...
    at T=1000, the last one -1) we keep the first S, as `make_timesteps` does.
    """
    T, S = num_train_timesteps, steps
    if not 1 <= S <= T:
        raise DifflabError(f"steps must be in [1, {T}], got {S}")
    if spacing not in SPACINGS:
        raise DifflabError(f"unknown timestep spacing {spacing!r} (choose from {', '.join(SPACINGS)})")
    if spacing == "trailing":
        return make_timesteps(T, S, "trailing").numpy()
    if S == T:  # S+1 points on T timesteps: two would share a timestep (a zero-length step)
        raise DifflabError(f"{spacing} spacing takes at most {T - 1} steps (it places S+1 points on "
                           f"{T} timesteps); use trailing for {T}")
    return make_timesteps(T, S + 1, spacing).numpy()[:-1]


def _sigmas_at(schedule: NoiseSchedule, timesteps: np.ndarray | None = None) -> np.ndarray:
    """sigma_t / alpha_t = sqrt((1 - a_bar_t) / a_bar_t) at the given timesteps (default all T), float32.

    The torch expression diffusers uses (numpy's correctly rounded sqrt differs from torch's in the last
    bit for ~15% of t). Indexing first keeps a few-step sampler's table small: torch hands a sqrt of over
    ~64 elements to its thread pool, which cost 8 ms per sampler on a loaded 2-core machine.
    """
    a = schedule.alphas_cumprod
    if timesteps is not None:
        a = a[torch.from_numpy(timesteps)]
    return (((1 - a) / a) ** 0.5).numpy()


def karras_sigmas(schedule: NoiseSchedule, steps: int) -> tuple[np.ndarray, np.ndarray]:
    """Karras et al. 2022 (EDM, rho = 7) noise levels sigma = sqrt((1 - a_bar) / a_bar) between the
    schedule's extremes, and the timesteps (S,) int64 whose log-sigma they interpolate, rounded.

    Returns (sigmas (S,) float64, timesteps (S,) int64), computed as diffusers' _convert_to_karras and
    _sigma_to_t do (vectorised; the element-wise operations and dtypes are the same). diffusers' DPM-Solver
    truncates instead of rounding for the cosine schedule only; we always round (UniPC's choice).
    """
    sig = _sigmas_at(schedule)  # increasing with t
    log_sig = np.log(sig)
    rho = 7.0
    lo, hi = sig[0].item() ** (1 / rho), sig[-1].item() ** (1 / rho)
    sigmas = (hi + np.linspace(0, 1, steps) * (lo - hi)) ** rho
    # _sigma_to_t: piecewise-linear interpolation of t in log sigma
    log_s = np.log(np.maximum(sigmas, 1e-10))
    dists = log_s - log_sig[:, None]
    low = np.cumsum(dists >= 0, axis=0).argmax(axis=0).clip(max=len(log_sig) - 2)
    w = np.clip((log_sig[low] - log_s) / (log_sig[low] - log_sig[low + 1]), 0, 1)
    t = (1 - w) * low + w * (low + 1)
    return sigmas, t.round().astype(np.int64)


def _alpha_sigma(sigma: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """VP alpha_t, sigma_t and lambda_t = log(alpha_t / sigma_t) from sigma = sigma_t / alpha_t (float32
    0-dim, as diffusers' _sigma_to_alpha_sigma_t). sigma = 0 gives lambda = +inf: the final step to x0."""
    alpha = 1 / ((sigma**2 + 1) ** 0.5)
    sigma_t = sigma * alpha
    return alpha, sigma_t, torch.log(alpha) - torch.log(sigma_t)


@dataclass
class SolverState:
    """What a multistep solver carries from step i-1 to step i; `SolverState()` before the first step."""

    x0: torch.Tensor | None = None  # data prediction of step i-1, (B, C, H, W)
    # UniPC: the predictor's first-order part and its divided difference D1 at step i-1, which the
    # corrector at step i needs as they are (same scalars, same inputs): kept instead of recomputed
    base: torch.Tensor | None = None
    d1: torch.Tensor | None = None


@dataclass
class _Multistep(ABC):
    """Timesteps, sigmas and the loop shared by the two solvers; subclasses add `_precompute` and `step`."""

    schedule: NoiseSchedule = field(default_factory=NoiseSchedule)
    steps: int = 20
    spacing: str = "linspace"  # diffusers' default for both schedulers
    use_karras_sigmas: bool = False
    clip_x0: float | None = None  # clamp the data prediction to [-c, c] (not in diffusers' parity)

    def __post_init__(self):
        if self.clip_x0 is not None and not self.clip_x0 > 0:  # also rejects NaN
            raise DifflabError(f"clip_x0 must be > 0 (or None for no clipping), got {self.clip_x0}")
        T = self.schedule.num_train_timesteps
        if self.use_karras_sigmas:
            if self.spacing != "linspace":  # an ignored option would be a trap
                raise DifflabError(f"Karras sigmas place their own timesteps: spacing must stay 'linspace', "
                                   f"got {self.spacing!r}")
            if not 1 <= self.steps <= T:
                raise DifflabError(f"steps must be in [1, {T}], got {self.steps}")
            sig, ts = karras_sigmas(self.schedule, self.steps)
        else:
            ts = solver_timesteps(T, self.steps, self.spacing)
            sig = _sigmas_at(self.schedule, ts)
        self.timesteps = torch.from_numpy(ts.copy())
        # sigma per step and a final 0 (diffusers' final_sigmas_type="zero": the last step lands on x0)
        self.sigmas = torch.from_numpy(np.concatenate([sig, [0.0]]).astype(np.float32))
        # data prediction x0 = (x_t - sigma_t eps) / alpha_t (DPM-Solver++'s x_theta)
        self._convert = [tuple(float(v) for v in _alpha_sigma(s)[1::-1]) for s in self.sigmas[:-1]]
        self._coefs = self._precompute([_alpha_sigma(s) for s in self.sigmas])

    @abstractmethod
    def _precompute(self, asl: list[tuple[torch.Tensor, ...]]) -> list[tuple]:
        """Per-step Python floats from (alpha, sigma, lambda) of every level (S+1, the last sigma 0)."""

    def data_prediction(self, eps: torch.Tensor, i: int, x_t: torch.Tensor) -> torch.Tensor:
        """x0 (B, C, H, W) predicted at step i from eps and x_t, clamped to [-clip_x0, clip_x0] if set."""
        s, a = self._convert[i]
        x0 = (x_t - s * eps) / a
        return x0 if self.clip_x0 is None else x0.clamp_(-self.clip_x0, self.clip_x0)

    @abstractmethod
    def step(self, eps: torch.Tensor, i: int, x_t: torch.Tensor, state: SolverState
             ) -> tuple[StepOutput, SolverState]:
        """One update at step index i from eps = eps_fn(x_t, t_i); returns the output and the next state."""

    def iterate(self, eps_fn: EpsFn, x_T: torch.Tensor, generator: torch.Generator | None = None
                ) -> Iterator[StepOutput]:
        """Yield a StepOutput (t, x at the next level, predicted x0) per step from x_T (B, C, H, W) ~ N(0, I).

        `generator` is accepted for the same interface as DDIMSampler; these ODE solvers draw no noise.
        """
        x, state = x_T, SolverState()
        for i, t in enumerate(self.timesteps.tolist()):
            out, state = self.step(eps_fn(x, t), i, x, state)
            x = out.prev_sample
            yield out

    def sample(self, eps_fn: EpsFn, x_T: torch.Tensor, generator: torch.Generator | None = None,
               callback: Callable[[StepOutput], None] | None = None) -> torch.Tensor:
        """Run `iterate` to the end; return x_0 (B, C, H, W), not clamped."""
        return run_to_end(self.iterate(eps_fn, x_T, generator), callback)


@dataclass
class DPMSolverPP2M(_Multistep):
    """DPM-Solver++(2M) (Lu et al. 2022, arXiv 2211.01095, Algorithm 2): second-order multistep on the
    data prediction, first order at the first step (no history yet) and at the last step.

    The last step goes to sigma = 0, where h = inf: a second-order term there would be inf * 0, and
    diffusers takes the first-order step whenever the final sigma is zero (for order 2 its
    lower_order_final < 15-step rule changes nothing else). See `_Multistep` for the fields.
    """

    def _precompute(self, asl):
        coefs = []
        for i in range(len(asl) - 1):
            (_, sig_s, lam_s), (alpha_t, sig_t, lam_t) = asl[i], asl[i + 1]
            h = lam_t - lam_s  # h_i = lambda_{t_i} - lambda_{t_{i-1}}: the step in log-SNR
            c_x = sig_t / sig_s
            c_0 = alpha_t * (torch.exp(-h) - 1.0)  # alpha_t (e^{-h} - 1), the first-order (DDIM) weight
            if i == 0 or i == len(asl) - 2:
                coefs.append((float(c_x), float(c_0)))
                continue
            r = (lam_s - asl[i - 1][2]) / h  # r_i = h_{i-1} / h_i (Alg. 2)
            coefs.append((float(c_x), float(c_0), float(0.5 * c_0), float(1.0 / r)))
        return coefs

    def step(self, eps, i, x_t, state):
        """One update x_{t_i} -> x_{t_{i+1}} (step index i, from eps = eps_fn(x_t, t_i)); see `iterate`.

        state.x0 is the previous step's data prediction (None at i = 0); returns the new state.
        """
        x0 = self.data_prediction(eps, i, x_t)
        c = self._coefs[i]
        # DPM-Solver++1 (= DDIM, Alg. 2's first step): x_t = (sigma_t/sigma_s) x_s - alpha_t (e^{-h} - 1) x0
        prev = c[0] * x_t - c[1] * x0
        if len(c) > 2:
            # Alg. 2's update with D_i = (1 + 1/(2r)) x0_i - 1/(2r) x0_{i-1} in place of x0, written (as
            # diffusers does) as x0_i + (1/(2r)) (x0_i - x0_{i-1}): the same sum, the same rounding
            prev = prev - c[2] * (c[3] * (x0 - state.x0))
        return StepOutput(int(self.timesteps[i]), prev, x0), SolverState(x0)


def _unipc_transition(lo: tuple, hi: tuple, prev: tuple | None) -> tuple[float, ...]:
    """UniPC-bh2 scalars (x0 form) for the step from level lo to level hi (each (alpha, sigma, lambda));
    `prev` is the level before lo for order 2. Written as diffusers' multistep_uni_p/c_bh_update do.

    Returns (sigma_hi/sigma_lo, alpha_hi (e^{-h} - 1), alpha_hi B(h), r_1, rho_c...): UniC-p's rho_c solve
    R_p rho = b_p (rows r_m^{k-1}; order p = 1 or 2, UniC-1 takes rho = 1/2); UniP-2's rho_p is 1/2.
    """
    alpha_t, sig_t, lam_t = hi
    h = lam_t - lo[2]
    hh = -h  # the data-prediction (predict_x0) form integrates in -lambda
    h_phi_1 = torch.expm1(hh)  # h phi_1(h) = e^h - 1
    b_h = torch.expm1(hh)  # B(h) = e^h - 1: bh2
    base = (float(sig_t / lo[1]), float(alpha_t * h_phi_1), float(alpha_t * b_h))
    if prev is None:
        return (*base, 0.0, 0.5)  # order 1: rho_c = 1/2 (UniPC's simplified UniC-1)
    rks = torch.stack([(prev[2] - lo[2]) / h, torch.ones(())])  # r_1 = (lambda_{i-1} - lambda_i) / h
    h_phi_k, factorial, b = h_phi_1 / hh - 1, 1, []
    for k in (1, 2):  # b_k = k! hh phi_{k+1}(hh) / B(h): the order conditions of the x0 expansion
        b.append(h_phi_k * factorial / b_h)
        factorial *= k + 1
        h_phi_k = h_phi_k / hh - 1 / factorial
    rhos_c = torch.linalg.solve(torch.stack([rks**0, rks**1]), torch.stack(b))
    return (*base, float(rks[0]), float(rhos_c[0]), float(rhos_c[1]))


@dataclass
class UniPC(_Multistep):
    """UniPC (Zhao et al. 2023, arXiv 2302.04867): multistep UniP-2 predictor + UniC corrector in the data
    prediction form with B(h) = e^h - 1 (bh2), as diffusers' UniPCMultistepScheduler defaults (order 2).

    The corrector refines x_{t_i} with the model output at x_{t_i} itself, which the next predictor needs
    anyway: still ONE network call per step. Order 1 at the first step (no history) and at the last
    (lower_order_final, to sigma = 0); the last predictor output is not corrected (no further call).
    A yielded StepOutput's prev_sample is the predictor's output (the network's next input), as diffusers
    returns it. See `_Multistep` for the fields.
    """

    def _precompute(self, asl):
        S = len(asl) - 1
        # predictor order p_i: 1 at i = 0 and i = S-1, else 2; the corrector at i uses p_{i-1}
        return [_unipc_transition(asl[i], asl[i + 1], asl[i - 1] if 0 < i < S - 1 else None)
                for i in range(S)]

    def step(self, eps, i, x_t, state):
        """One UniC + UniP update at step index i (eps = eps_fn(x_t, t_i), x_t the last predictor output).

        state: the previous step's x0, first-order part and D1 (empty at i = 0); returns the new state.
        """
        x0 = self.data_prediction(eps, i, x_t)  # from the uncorrected x_t, as the network saw it
        if i > 0:
            # UniC-p: x^c_t = base - alpha_t B(h) (sum_{m<p} rho_m D_m + rho_p D1_t), D1_t = x0_t - x0_{t-1},
            # over the transition the previous predictor took (so base and D_1 are that predictor's)
            _, _, c, _, *rho = self._coefs[i - 1]
            d1_t = x0 - state.x0
            corr = rho[-1] * d1_t if state.d1 is None else rho[0] * state.d1 + rho[1] * d1_t
            x_t = state.base - c * corr
        c_x, c_0, c, r1, *_ = self._coefs[i]
        # UniP-p: first-order part (sigma_t/sigma_s) x - alpha_t (e^{-h} - 1) x0 ...
        base = c_x * x_t - c_0 * x0
        d1 = None
        if r1:  # ... minus alpha_t B(h) rho_p D_1, with D_1 = (x0_{i-1} - x0_i) / r_1 and rho_p = 1/2
            d1 = (state.x0 - x0) / r1
            prev = base - (c * 0.5) * d1  # c * (0.5 * D1) rounds the same: 0.5 is exact
        else:
            prev = base
        return StepOutput(int(self.timesteps[i]), prev, x0), SolverState(x0, base, d1)


def make_sampler(name: str, schedule: NoiseSchedule, steps: int, *, eta: float = 0.0, spacing: str | None = None,
                 clip_x0: float | None = None, karras: bool = False, final_alpha_one: bool = True):
    """The sampler called `name` (one of SAMPLERS) over `steps` of the schedule's timesteps.

    spacing None: each sampler's own default (ddim/ddpm leading, dpmpp-2m/unipc linspace as diffusers).
    clip_x0 is passed to every sampler as given (None: no clipping; DDPMSampler's own default is 1.0).
    eta only applies to ddim, karras only to dpmpp-2m/unipc, final_alpha_one=False only to ddim: any of
    them set for a sampler it does not apply to is a DifflabError, as is an unknown name or
    steps outside [1, T]. Returns a DDIMSampler, DDPMSampler, DPMSolverPP2M or UniPC.
    """
    if name not in SAMPLERS:
        raise DifflabError(f"unknown sampler {name!r} (choose from {', '.join(SAMPLERS)})")
    T = schedule.num_train_timesteps
    if isinstance(steps, bool) or not isinstance(steps, Integral) or not 1 <= steps <= T:
        raise DifflabError(f"steps must be an integer in [1, {T}], got {steps!r}")
    if eta != 0 and name != "ddim":
        raise DifflabError(f"eta applies to ddim only, not {name} (got eta {eta})")
    if karras and name not in MULTISTEP_SOLVERS:
        raise DifflabError(f"Karras sigmas apply to dpmpp-2m and unipc only, not {name}")
    if not final_alpha_one and name != "ddim":
        raise DifflabError(f"final_alpha_one=False applies to ddim only ({name} ends at alpha_bar = 1)")
    steps = int(steps)
    if name == "ddim":
        return DDIMSampler(schedule, steps=steps, spacing=spacing or "leading", eta=eta, clip_x0=clip_x0,
                           final_alpha_one=final_alpha_one)
    if name == "ddpm":
        if spacing not in (None, "leading"):
            raise DifflabError(f"ddpm uses leading spacing only, got {spacing!r}")
        return DDPMSampler(schedule, steps=steps, clip_x0=clip_x0)
    cls = DPMSolverPP2M if name == "dpmpp-2m" else UniPC
    return cls(schedule, steps=steps, spacing=spacing or "linspace", use_karras_sigmas=karras, clip_x0=clip_x0)
