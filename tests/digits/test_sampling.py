import pytest
import torch

from difflab.diffusion.sampling import DDIMSampler, DDPMSampler, cfg_eps_fn
from difflab.diffusion.schedule import NoiseSchedule, make_timesteps
from difflab.errors import DifflabError


def test_alphas_cumprod_and_q_sample_statistics():
    s = NoiseSchedule()
    assert torch.allclose(s.alphas_cumprod[10], torch.prod(1 - s.betas[:11]))
    x0 = torch.full((20000, 1, 1, 1), 0.7)
    t = torch.full((20000,), 300)
    g = torch.Generator().manual_seed(0)
    x_t = s.q_sample(x0, t, torch.randn(x0.shape, generator=g))
    a = s.alphas_cumprod[300]
    # q(x_t | x0) = N(sqrt(a) x0, (1 - a) I): check mean and variance
    assert abs(x_t.mean() - a.sqrt() * 0.7) < 0.02
    assert abs(x_t.var() - (1 - a)) < 0.02


def test_timestep_spacings():
    assert make_timesteps(1000, 50, "leading", offset=1)[:3].tolist() == [981, 961, 941]
    assert make_timesteps(1000, 50, "leading", offset=1)[-1] == 1
    assert make_timesteps(1000, 50, "trailing")[:2].tolist() == [999, 979]
    assert make_timesteps(1000, 50, "linspace")[[0, -1]].tolist() == [999, 0]
    for bad in (0, 1001):
        with pytest.raises(DifflabError, match="steps must be in"):
            make_timesteps(1000, bad)


def _eps_fn(x, t):  # a smooth stand-in for a network
    return torch.tanh(x) * (t / 1000)


def test_ddim_eta0_is_deterministic():
    x_T = torch.randn(2, 3, 8, 8)
    s = DDIMSampler(steps=20)
    a = s.sample(_eps_fn, x_T, torch.Generator().manual_seed(1))
    b = s.sample(_eps_fn, x_T, torch.Generator().manual_seed(2))
    assert torch.equal(a, b)
    c = DDIMSampler(steps=20, eta=0.5).sample(_eps_fn, x_T, torch.Generator().manual_seed(2))
    assert not torch.allclose(a, c)


def test_ddpm_equals_ddim_eta1():
    # DDPM's posterior variance is DDIM's sigma at eta = 1; both draw one noise per step in order
    x_T = torch.randn(2, 3, 8, 8)
    sched = NoiseSchedule()
    a = DDPMSampler(sched, steps=25, clip_x0=None).sample(_eps_fn, x_T, torch.Generator().manual_seed(3))
    b = DDIMSampler(sched, steps=25, eta=1.0).sample(_eps_fn, x_T, torch.Generator().manual_seed(3))
    assert torch.allclose(a, b, atol=1e-4)


def test_iterate_yields_every_step_and_x0():
    outs = list(DDIMSampler(steps=10).iterate(_eps_fn, torch.randn(1, 3, 4, 4)))
    assert [o.t for o in outs] == make_timesteps(1000, 10).tolist()
    assert outs[-1].pred_original_sample.shape == (1, 3, 4, 4)


def test_eta_out_of_range():
    with pytest.raises(DifflabError, match="eta must be in"):
        DDIMSampler(eta=1.5)


def test_cfg_limits_and_formula(tiny_unet):
    x = torch.randn(3, 3, 28, 28)
    digits, domains = torch.tensor([1, 2, 3]), torch.tensor([0, 1, 0])
    t = 500
    tt = torch.full((3,), t)
    with torch.no_grad():
        cond = tiny_unet(x, tt, digits, domains)
        uncond = tiny_unet(x, tt, torch.full((3,), 10), torch.full((3,), 2))
        assert not torch.allclose(cond, uncond)
        torch.testing.assert_close(cfg_eps_fn(tiny_unet, digits, domains, 0.0)(x, t), uncond)
        torch.testing.assert_close(cfg_eps_fn(tiny_unet, digits, domains, 1.0)(x, t), cond)
        w3 = cfg_eps_fn(tiny_unet, digits, domains, 3.0)(x, t)  # one batched pass of 6 rows
        torch.testing.assert_close(w3, uncond + 3.0 * (cond - uncond), atol=1e-5, rtol=1e-4)


def test_unet_moves_like_any_module(tiny_unet):
    # .to()/.double()/.half() go through nn.Module._apply: a method of that name on the UNet broke them
    x, t = torch.randn(2, 3, 28, 28), torch.tensor([5, 500])
    digits, domains = torch.tensor([3, 10]), torch.tensor([0, 2])
    with torch.no_grad():
        ref = tiny_unet(x, t, digits, domains)
        out = tiny_unet.to(torch.float64)(x.double(), t, digits, domains)
    assert out.dtype == torch.float64
    assert torch.allclose(out.float(), ref, atol=1e-5)
