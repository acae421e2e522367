"""`difflab ddim sample --sampler {ddim,dpmpp-2m,unipc} [--karras]` against the samplers used directly.

The model is a user model file (`--unet-module`) with an analytic, nonlinear forward on 3x8x8 noise: it
goes through the same loader as any user UNet and keeps these CLI runs to a fraction of a second.
"""

import re

import numpy as np
import pytest
import torch
from PIL import Image

from difflab.cli import main
from difflab.ddim.config import DDIMConfig
from difflab.ddim.noise import load_noise_dir
from difflab.diffusion.sampling import DDIMSampler
from difflab.diffusion.schedule import NoiseSchedule
from difflab.diffusion.solvers import DPMSolverPP2M, make_sampler
from difflab.io import to_uint8
from difflab.models.loaders import load_user_unet

NET = """import torch


class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.tensor(1.0))

    def forward(self, x, t):
        s = (0.5 + t.float() / 1000).view(-1, 1, 1, 1)
        return self.w * s * x / (1 + x * x) + 0.3 * x + 0.2 * torch.roll(x, 1, -1)
"""


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    d = tmp_path_factory.mktemp("flag")
    (d / "net.py").write_text(NET)
    torch.save({"w": torch.tensor(0.8)}, d / "w.pt")
    assert main(["ddim", "noise", str(d / "noise"), "--count", "3", "--shape", "3", "8", "8", "--seed", "4"]) == 0
    return d


def run(capsys, setup, out, *argv):
    rc = main(["ddim", "sample", str(setup / "noise"), str(out), "--unet-module", f"{setup}/net.py:Net",
               "--weights", str(setup / "w.pt"), "--steps", "5", *map(str, argv)])
    stdout, err = capsys.readouterr()
    return rc, stdout, err


def pngs(folder) -> np.ndarray:
    return np.stack([np.asarray(Image.open(folder / f"0{i}.png").convert("RGB")).astype(int) for i in range(3)])


def direct(setup, sampler) -> np.ndarray:
    """The same noise, model and sampler without the CLI -> (3, 8, 8, 3) uint8 as the CLI saves them."""
    model = load_user_unet(f"{setup}/net.py:Net", setup / "w.pt")
    _, noise = load_noise_dir(setup / "noise", None)
    with torch.inference_mode():
        return to_uint8(sampler.sample(model, noise)).astype(int)


def test_default_is_ddim_as_before(tmp_path, capsys, setup):
    rc, out, _ = run(capsys, setup, tmp_path / "a")
    assert rc == 0 and "5 steps, eta 0 ->" in out
    assert run(capsys, setup, tmp_path / "b", "--sampler", "ddim")[0] == 0
    assert np.array_equal(pngs(tmp_path / "a"), pngs(tmp_path / "b"))
    # today's default: DDIM, leading spacing, no clipping, alpha_bar 1 after the last step
    assert np.array_equal(pngs(tmp_path / "a"), direct(setup, DDIMSampler(NoiseSchedule(), steps=5)))
    s = DDIMConfig().sampler(NoiseSchedule())
    assert type(s) is DDIMSampler and s.spacing == "leading" and s.eta == 0 and s.offset == 0


@pytest.mark.parametrize("name,flags,kw", [
    ("dpmpp-2m", [], {}),
    ("unipc", [], {}),
    ("dpmpp-2m", ["--karras"], {"karras": True}),
    ("unipc", ["--spacing", "trailing", "--clip-x0", "1"], {"spacing": "trailing", "clip_x0": 1.0}),
])
def test_solver_flag_equals_make_sampler(tmp_path, capsys, setup, name, flags, kw):
    rc, out, _ = run(capsys, setup, tmp_path / "o", "--sampler", name, *flags)
    assert rc == 0 and f"5 steps, {name}" in out and ("karras" in out) == ("--karras" in flags)
    got = pngs(tmp_path / "o")
    assert np.abs(got - direct(setup, make_sampler(name, NoiseSchedule(), 5, **kw))).max() <= 1
    assert np.abs(got - direct(setup, DDIMSampler(NoiseSchedule(), steps=5))).mean() > 1  # not DDIM


def test_solver_default_spacing_is_diffusers_linspace():
    s = DDIMConfig(sampler_name="dpmpp-2m", steps=10).sampler(NoiseSchedule())
    assert type(s) is DPMSolverPP2M and s.spacing == "linspace" and s.timesteps[0] == 999


@pytest.mark.parametrize("flags,match", [
    (["--sampler", "unipc", "--eta", "0.5"], "--eta applies to --sampler ddim only"),
    (["--karras"], "--karras applies to --sampler dpmpp-2m or unipc"),
    (["--sampler", "dpmpp-2m", "--karras", "--spacing", "linspace"], "--karras places its own timesteps"),
    (["--sampler", "unipc", "--offset", "1"], "--offset applies to --sampler ddim only"),
    (["--sampler", "dpmpp-2m", "--final-alpha", "first"], "--final-alpha first applies to --sampler ddim"),
    (["--sampler", "unipc", "--steps", "1000"], "at most 999 steps"),
    (["--sampler", "unipc", "--steps", "1001"], r"steps must be an integer in \[1, 1000\]"),
])
def test_solver_flag_errors(tmp_path, capsys, setup, flags, match):
    rc, _, err = run(capsys, setup, tmp_path / "o", *flags)
    assert rc == 2 and err.count("\n") == 1
    assert re.search(match, err), err


def test_unknown_sampler_is_an_argparse_error(tmp_path, capsys, setup):
    with pytest.raises(SystemExit) as e:
        run(capsys, setup, tmp_path / "o", "--sampler", "heun")
    assert e.value.code == 2
