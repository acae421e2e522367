"""Our DDIMSampler against diffusers' DDIMScheduler / DDIMInverseScheduler on the same model and noise.

The model is a tiny random UNet2DModel loaded through our diffusers loader; both loops call the same
eps function, so any difference comes from the schedulers. Bounds are the issue's: 1e-6 at eta = 0,
1e-4 at eta > 0 (same variance noise), float32, [-1, 1]-scale samples.
"""

import itertools

import pytest
import torch

from difflab.diffusion.sampling import DDIMSampler
from difflab.diffusion.schedule import NoiseSchedule, make_timesteps
from difflab.errors import DifflabError
from difflab.models.loaders import load_diffusers_unet

diffusers = pytest.importorskip("diffusers")

SCHEDULES = {"linear": "linear", "scaled_linear": "scaled_linear", "cosine": "squaredcos_cap_v2"}
BETAS = {"linear": (1e-4, 2e-2), "scaled_linear": (8.5e-4, 1.2e-2), "cosine": (1e-4, 2e-2)}


def _pair(steps, spacing="leading", offset=0, eta=0.0, clip=None, alpha_one=True, kind="linear", T=1000):
    lo, hi = BETAS[kind]
    ours = DDIMSampler(NoiseSchedule(kind, T, lo, hi), steps=steps, spacing=spacing, offset=offset, eta=eta,
                       clip_x0=clip, final_alpha_one=alpha_one)
    ref = diffusers.DDIMScheduler(num_train_timesteps=T, beta_start=lo, beta_end=hi,
                                  beta_schedule=SCHEDULES[kind], clip_sample=clip is not None,
                                  clip_sample_range=clip or 1.0,
                                  set_alpha_to_one=alpha_one, steps_offset=offset, timestep_spacing=spacing)
    ref.set_timesteps(steps)
    return ours, ref


def _reference_loop(ref, eps_fn, x, eta, noises):
    x0s = []
    for i, t in enumerate(ref.timesteps):
        out = ref.step(eps_fn(x, int(t)), t, x, eta=eta, variance_noise=noises[i] if eta > 0 else None)
        x, _ = out.prev_sample, x0s.append(out.pred_original_sample)
    return x, x0s


@pytest.fixture(scope="module")
def unet(diffusers_dir):
    return load_diffusers_unet(diffusers_dir)


def _check(unet, steps, tol_scale=1.0, **kw):
    ours, ref = _pair(steps, **kw)
    assert torch.equal(ours.timesteps, ref.timesteps)
    g = torch.Generator().manual_seed(1)
    x_T = torch.randn(2, 3, 8, 8, generator=g)
    noises = [torch.randn(2, 3, 8, 8, generator=g) for _ in range(steps)]
    with torch.inference_mode():
        want, want_x0 = _reference_loop(ref, unet, x_T, kw.get("eta", 0.0), noises)
        got = list(ours.iterate(unet, x_T, variance_noise=noises if kw.get("eta", 0.0) > 0 else None))
    tol = 1e-6 if kw.get("eta", 0.0) == 0 else 1e-4
    assert (got[-1].prev_sample - want).abs().max() <= tol
    for o, w in zip(got, want_x0):  # also every predicted x0 (clipped or not), relative to its scale
        assert (o.pred_original_sample - w).abs().max() <= tol * max(1.0, float(w.abs().max()))
    return got[-1].prev_sample


@pytest.mark.parametrize("spacing,eta,clip,alpha_one",
                         list(itertools.product(["leading", "trailing", "linspace"], [0.0, 0.7], [None, 1.0],
                                                [True, False])))
def test_sampler_matches_diffusers(unet, spacing, eta, clip, alpha_one):
    _check(unet, 10, spacing=spacing, eta=eta, clip=clip, alpha_one=alpha_one)


@pytest.mark.parametrize("eta", [0.0, 1.0])
def test_leading_with_offset_full_50_steps(unet, eta):
    ours, _ = _pair(50, offset=1)
    assert ours.timesteps[[0, 1, -1]].tolist() == [981, 961, 1]
    _check(unet, 50, offset=1, eta=eta)


@pytest.mark.parametrize("kind", ["scaled_linear", "cosine"])
def test_other_beta_schedules(unet, kind):
    ours, ref = _pair(10, kind=kind)
    assert torch.equal(ours.schedule.alphas_cumprod, ref.alphas_cumprod)
    _check(unet, 10, kind=kind, eta=0.5)


def test_options_change_the_result(unet):
    # the parametrised parity tests would be vacuous if clipping or the final alpha did nothing here
    base = _check(unet, 10)
    assert not torch.allclose(base, _check(unet, 10, clip=1.0))
    assert not torch.allclose(base, _check(unet, 10, alpha_one=False))


def test_generator_path_draws_like_diffusers(unet):
    # without explicit variance noise both draw randn(shape, generator) once per step, in order
    ours, ref = _pair(10, eta=1.0)
    x_T = torch.randn(2, 3, 8, 8)
    with torch.inference_mode():
        got = ours.sample(unet, x_T, torch.Generator().manual_seed(5))
        g, x = torch.Generator().manual_seed(5), x_T
        for t in ref.timesteps:
            x = ref.step(unet(x, int(t)), t, x, eta=1.0, generator=g).prev_sample
    assert (got - x).abs().max() <= 1e-4


def test_timesteps_match_diffusers_for_every_step_count():
    # includes the step counts (61, 103, ...) where diffusers' trailing arange yields one value too many
    for spacing in ("leading", "trailing", "linspace"):
        ref = diffusers.DDIMScheduler(num_train_timesteps=1000, timestep_spacing=spacing)
        for S in range(1, 1001, 7):
            ref.set_timesteps(S)
            want = ref.timesteps[:S]
            assert torch.equal(make_timesteps(1000, S, spacing), want), (spacing, S)


def test_offset_needs_leading():
    with pytest.raises(DifflabError, match="only applies to leading"):
        make_timesteps(1000, 50, "trailing", offset=1)


@pytest.mark.parametrize("spacing,alpha_one", [("leading", True), ("leading", False), ("trailing", True)])
def test_inversion_matches_diffusers_inverse_scheduler(unet, spacing, alpha_one):
    ours, _ = _pair(10, spacing=spacing, alpha_one=alpha_one)
    inv = diffusers.DDIMInverseScheduler(num_train_timesteps=1000, clip_sample=False,
                                         set_alpha_to_one=alpha_one, timestep_spacing=spacing)
    inv.set_timesteps(10)
    assert torch.equal(ours.timesteps.flip(0), inv.timesteps)
    x0 = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(2)) * 2 - 1
    with torch.inference_mode():
        got = ours.invert(unet, x0, fixed_point_iters=0)
        x = x0
        for t in inv.timesteps:
            x = inv.step(unet(x, int(t)), t, x).prev_sample
    assert (got - x).abs().max() <= 1e-6
