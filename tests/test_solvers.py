"""DPM-Solver++(2M) and UniPC against diffusers' schedulers, make_sampler, and CFG's guidance interval.

The eps model is a fixed nonlinear function of (x, t) (float32, deterministic); both loops call it on
their own x_t, so every step's x_t and predicted x0 must agree (bound 1e-5, the issue's).
"""

import itertools

import pytest
import torch

from difflab.diffusion.sampling import DDIMSampler, DDPMSampler, cfg_eps_fn, parse_guidance_interval
from difflab.diffusion.schedule import NoiseSchedule
from difflab.diffusion.solvers import SAMPLERS, DPMSolverPP2M, UniPC, make_sampler, solver_timesteps
from difflab.errors import DifflabError

diffusers = pytest.importorskip("diffusers")
# diffusers 0.42 with numpy 2 warns in set_timesteps (np.array of a tensor): not ours
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

SOLVERS = {"dpmpp-2m": DPMSolverPP2M, "unipc": UniPC}
STEPS = (1, 2, 3, 5, 10, 20)
# (karras, spacing): Karras sigmas place their own timesteps, so they go with the default spacing only
GRIDS = [(False, "linspace"), (False, "leading"), (False, "trailing"), (True, "linspace")]


def EPS(x, t):
    # nonlinear in x, mixes pixels and channels, depends on t. Only ops that torch runs inline at this
    # size: tanh or conv2d on 384 elements go to its thread pool, which costs ~10 ms a call beside a
    # busy background job on 2 cores
    return (0.5 + t / 1000) * x / (1 + x * x) + 0.3 * x + 0.2 * torch.roll(x, 1, -1) - 0.1 * x.flip(1)


def _reference(name, steps, karras, spacing, beta_schedule="linear"):
    kw = dict(num_train_timesteps=1000, beta_start=1e-4, beta_end=0.02, beta_schedule=beta_schedule,
              prediction_type="epsilon", use_karras_sigmas=karras, timestep_spacing=spacing)
    if name == "dpmpp-2m":
        ref = diffusers.DPMSolverMultistepScheduler(algorithm_type="dpmsolver++", solver_order=2, **kw)
    else:  # solver_type bh2, predict_x0, order 2, corrector on: the defaults
        ref = diffusers.UniPCMultistepScheduler(**kw)
    ref.set_timesteps(steps)
    return ref


@pytest.mark.parametrize("name,steps,grid", list(itertools.product(SOLVERS, STEPS, GRIDS)))
def test_every_step_matches_diffusers(name, steps, grid):
    karras, spacing = grid
    ours = SOLVERS[name](NoiseSchedule(), steps=steps, spacing=spacing, use_karras_sigmas=karras)
    _assert_every_step_matches(ours, _reference(name, steps, karras, spacing))


@pytest.mark.parametrize("name,steps", list(itertools.product(SOLVERS, (4, 10, 20))))
def test_every_step_matches_diffusers_on_the_cosine_schedule(name, steps):
    # a model trained with --schedule cosine: alpha_bar falls to ~1e-9 at t = 999 (betas capped at 0.999),
    # the far end of the log-SNR range the solvers step in
    ours = SOLVERS[name](NoiseSchedule("cosine"), steps=steps, spacing="trailing")
    _assert_every_step_matches(ours, _reference(name, steps, False, "trailing", "squaredcos_cap_v2"))


def _assert_every_step_matches(ours, ref):
    assert torch.equal(ours.timesteps, ref.timesteps) and torch.equal(ours.sigmas, ref.sigmas)
    x_T = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    got = list(ours.iterate(EPS, x_T))
    assert [o.t for o in got] == ref.timesteps.tolist()
    x = x_T
    for o, t in zip(got, ref.timesteps):
        x = ref.step(EPS(x, int(t)), t, x).prev_sample
        # model_outputs[-1]: diffusers' data prediction x0 at this step (it returns none itself)
        assert (o.pred_original_sample - ref.model_outputs[-1]).abs().max() <= 1e-5
        assert (o.prev_sample - x).abs().max() <= 1e-5
    assert torch.equal(ours.sample(EPS, x_T), got[-1].prev_sample)


def test_timesteps_match_diffusers_for_many_step_counts():
    for name, spacing in itertools.product(SOLVERS, ("linspace", "leading", "trailing")):
        ref = _reference(name, 1, False, spacing)
        for S in (4, 7, 15, 50, 100, 250, 999):
            ref.set_timesteps(S)
            assert torch.equal(torch.from_numpy(solver_timesteps(1000, S, spacing)), ref.timesteps), (spacing, S)


def test_options_change_the_result():
    # the parity grid would prove little if Karras sigmas, the spacing or the second order did nothing
    x_T = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(2))
    out = {(n, k, s): SOLVERS[n](NoiseSchedule(), 10, s, k).sample(EPS, x_T)
           for n, (k, s) in itertools.product(SOLVERS, GRIDS)}
    ddim = DDIMSampler(NoiseSchedule(), steps=10, spacing="linspace").sample(EPS, x_T)
    for a, b in itertools.combinations(list(out.values()) + [ddim], 2):
        assert (a - b).abs().max() > 1e-3


def test_second_order_converges_faster_than_ddim():
    # Data ~ N(0, s^2 I) has the exact eps(x_t, t) = sqrt(1-a) x_t / (a s^2 + 1 - a) and a linear ODE:
    # from t0 to x0 the exact map is x0 = x_t0 * s / sqrt(a s^2 + 1 - a). Halving the step size should
    # divide a second-order solver's error by ~4, DDIM's (first order) by ~2.
    sched, s2 = NoiseSchedule(), 0.25
    a = sched.alphas_cumprod.double()

    def eps(x, t):
        return ((1 - a[t]).sqrt() * x / (a[t] * s2 + 1 - a[t])).float()

    x_T = torch.randn(4, 3, 8, 8, generator=torch.Generator().manual_seed(3))

    def err(sampler):
        t0 = int(sampler.timesteps[0])
        exact = x_T.double() * s2**0.5 / (a[t0] * s2 + 1 - a[t0]).sqrt()
        return float((sampler.sample(eps, x_T).double() - exact).abs().max())

    for cls in SOLVERS.values():
        e10, e20 = err(cls(sched, 10, "trailing")), err(cls(sched, 20, "trailing"))
        d10, d20 = err(DDIMSampler(sched, 10, "trailing")), err(DDIMSampler(sched, 20, "trailing"))
        assert e10 / e20 > 3 and d10 / d20 < 2.5 and e20 < d20 / 2, (cls.__name__, e10, e20, d10, d20)


@pytest.mark.parametrize("name", SOLVERS)
def test_one_network_call_per_step_and_clip(name):
    calls = []

    def counted(x, t):
        calls.append(t)
        return EPS(x, t) * 3  # exaggerated eps: predicted x0 leaves [-1, 1]

    sampler = SOLVERS[name](NoiseSchedule(), 6, clip_x0=1.0)
    outs = list(sampler.iterate(counted, torch.randn(2, 3, 8, 8)))
    assert calls == sampler.timesteps.tolist() and len(outs) == 6
    assert all(o.pred_original_sample.abs().max() <= 1.0 for o in outs)
    with pytest.raises(DifflabError, match="clip_x0 must be > 0"):
        SOLVERS[name](NoiseSchedule(), 6, clip_x0=float("nan"))


@pytest.mark.parametrize("name", SOLVERS)
def test_step_count_bounds(name):
    cls, T = SOLVERS[name], 1000
    for bad in (0, T + 1):
        for kw in ({}, {"use_karras_sigmas": True}):
            with pytest.raises(DifflabError, match=r"steps must be in \[1, 1000\]"):
                cls(NoiseSchedule(), bad, **kw)
    # linspace/leading put S+1 points on T timesteps: S = T would give a zero-length step
    with pytest.raises(DifflabError, match="at most 999 steps"):
        cls(NoiseSchedule(), T)
    assert cls(NoiseSchedule(), T, "trailing").timesteps[[0, -1]].tolist() == [999, 0]
    assert len(cls(NoiseSchedule(), T - 1).timesteps) == T - 1
    with pytest.raises(DifflabError, match="spacing must stay 'linspace'"):
        cls(NoiseSchedule(), 5, "trailing", use_karras_sigmas=True)
    with pytest.raises(DifflabError, match="unknown timestep spacing"):
        cls(NoiseSchedule(), 5, "even")


def test_make_sampler_builds_each_sampler():
    sched = NoiseSchedule()
    ddim = make_sampler("ddim", sched, 10)
    assert isinstance(ddim, DDIMSampler) and ddim.spacing == "leading" and ddim.clip_x0 is None
    assert torch.equal(ddim.timesteps, DDIMSampler(sched, steps=10).timesteps)
    ddim = make_sampler("ddim", sched, 10, eta=0.5, spacing="trailing", clip_x0=1.0, final_alpha_one=False)
    assert (ddim.eta, ddim.spacing, ddim.clip_x0, ddim.final_alpha_one) == (0.5, "trailing", 1.0, False)
    ddpm = make_sampler("ddpm", sched, 10, clip_x0=1.0)
    assert isinstance(ddpm, DDPMSampler) and torch.equal(ddpm.timesteps, DDPMSampler(sched, 10).timesteps)
    for name, cls in SOLVERS.items():
        s = make_sampler(name, sched, 7, karras=True, clip_x0=2.0)
        assert type(s) is cls and s.use_karras_sigmas and s.clip_x0 == 2.0 and s.spacing == "linspace"
        assert make_sampler(name, sched, 7, spacing="trailing").spacing == "trailing"
    assert set(SAMPLERS) == {"ddim", "ddpm", "dpmpp-2m", "unipc"}


@pytest.mark.parametrize("kwargs,match", [
    (dict(name="heun"), "unknown sampler 'heun' \\(choose from ddim, ddpm, dpmpp-2m, unipc\\)"),
    (dict(steps=0), r"steps must be an integer in \[1, 1000\], got 0"),
    (dict(steps=1001), r"steps must be an integer in \[1, 1000\], got 1001"),
    (dict(name="ddpm", steps=0), r"steps must be an integer in \[1, 1000\]"),  # DDPMSampler reads 0 as T
    (dict(steps=2.5), "steps must be an integer"),
    (dict(eta=0.5), "eta applies to ddim only"),
    (dict(name="ddim", karras=True), "Karras sigmas apply to dpmpp-2m and unipc only"),
    (dict(final_alpha_one=False), "final_alpha_one=False applies to ddim only"),
    (dict(name="ddpm", spacing="trailing"), "ddpm uses leading spacing only"),
    (dict(spacing="even"), "unknown timestep spacing"),
])
def test_make_sampler_errors(kwargs, match):
    kw = {"name": "dpmpp-2m", "steps": 10, **kwargs}
    with pytest.raises(DifflabError, match=match) as e:
        make_sampler(kw.pop("name"), NoiseSchedule(), kw.pop("steps"), **kw)
    assert "\n" not in str(e.value)


class _CondModel(torch.nn.Module):
    """model(x, t (B,), digits (B,), domains (B,)) -> eps; records the rows of every call."""

    def __init__(self):
        super().__init__()
        self.rows = []

    def forward(self, x, t, digits, domains):
        self.rows.append(len(x))
        scale = (1 + digits.float() + 0.5 * domains.float()) * (1 + t.float() / 1000)
        return torch.tanh(x) * scale.view(-1, 1, 1, 1)


def test_guidance_interval_rows_and_values():
    model = _CondModel()
    digits, domains = torch.tensor([1, 4, 7]), torch.tensor([0, 1, 0])
    x = torch.randn(3, 3, 4, 4)
    plain = cfg_eps_fn(model, digits, domains, 3.0)
    cond = cfg_eps_fn(model, digits, domains, 1.0)
    fn = cfg_eps_fn(model, digits, domains, 3.0, guidance_interval=(200, 600), num_train_timesteps=1000)
    for t, inside in ((199, False), (200, True), (400, True), (600, True), (601, False), (999, False)):
        model.rows.clear()
        got = fn(x, t)
        assert model.rows == ([6] if inside else [3])  # one pass: 2B rows guided, B rows conditional
        want = (plain if inside else cond)(x, t)
        assert torch.equal(got, want)
    assert not torch.allclose(plain(x, 400), cond(x, 400))  # guidance does something here


@pytest.mark.parametrize("text,match", [
    ("5", "must look like LO,HI"), ("1,2,3", "must look like LO,HI"), ("a,b", "must look like LO,HI"),
    ("1.5,3", "must look like LO,HI"), ("nan,3", "must look like LO,HI"), ("", "must look like LO,HI"),
    ("3,1", "need 0 <= LO <= HI"), ("-1,5", "need 0 <= LO <= HI"), ("0,1000", "HI must be below the 1000"),
])
def test_parse_guidance_interval_errors(text, match):
    with pytest.raises(DifflabError, match=match) as e:
        parse_guidance_interval(text, 1000)
    assert "\n" not in str(e.value)


def test_guidance_interval_parsing_and_validation():
    assert parse_guidance_interval(" 0, 999", 1000) == (0, 999)
    assert parse_guidance_interval("300,300") == (300, 300)
    assert parse_guidance_interval("0,5000") == (0, 5000)  # no T given: no upper bound
    model, labels = _CondModel(), torch.tensor([1])
    for bad in ((5, 1), (-1, 3), (1.0, 3), (1, 2, 3), "1,2"):
        with pytest.raises(DifflabError, match="guidance interval"):
            cfg_eps_fn(model, labels, labels, 2.0, guidance_interval=bad)
    with pytest.raises(DifflabError, match="HI must be below the 100"):
        cfg_eps_fn(model, labels, labels, 2.0, guidance_interval=(0, 100), num_train_timesteps=100)
