"""`difflab ddim ...` end to end on tiny random models, checked against direct computations."""

import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from difflab.cli import main
from difflab.ddim.noise import make_noise
from difflab.diffusion.sampling import DDIMSampler, cfg_eps_fn
from difflab.diffusion.schedule import NoiseSchedule
from difflab.io import to_uint8
from difflab.models.digits import load_digit_model


def run(capsys, *argv):
    rc = main(["ddim", *map(str, argv)])
    out, err = capsys.readouterr()
    return rc, out, err


def png(path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB")).astype(int)


@pytest.fixture(scope="module")
def noise_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("noise")
    assert main(["ddim", "noise", str(d / "n"), "--count", "3", "--seed", "7"]) == 0
    return d / "n"


@pytest.fixture
def model_args(digits_ckpt):
    return ["--digits-model", digits_ckpt, "--digit", "4", "--domain", "svhn", "--guidance", "2",
            "--steps", "5"]


def test_sample_equals_direct_sampler(tmp_path, capsys, noise_dir, digits_ckpt, model_args):
    rc, out, _ = run(capsys, "sample", noise_dir, tmp_path / "out", *model_args, "--batch-size", "2")
    assert rc == 0 and "time:" in out and "3 images, 5 steps" in out
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["00.png", "01.png", "02.png"]
    # independent path: the checkpoint, CFG and sampler used directly on all three at once
    model, _, _ = load_digit_model(digits_ckpt)
    x_T = make_noise(3, (3, 28, 28), 7)
    with torch.no_grad():
        eps = cfg_eps_fn(model, torch.full((3,), 4), torch.full((3,), 1), 2.0)
        want = to_uint8(DDIMSampler(NoiseSchedule(), steps=5).sample(eps, x_T))
    for i in range(3):  # batches of 2 vs 3 may differ in the last float bit: allow one grey level
        assert np.abs(png(tmp_path / "out" / f"0{i}.png") - want[i]).max() <= 1


def test_eta_noise_does_not_depend_on_batch_size(tmp_path, capsys, noise_dir, model_args):
    for bs in (1, 3):
        assert run(capsys, "sample", noise_dir, tmp_path / f"b{bs}", *model_args, "--eta", "0.8",
                   "--batch-size", bs, "--seed", "3")[0] == 0
    run(capsys, "sample", noise_dir, tmp_path / "det", *model_args)
    for s in ("00", "01", "02"):
        a, b = png(tmp_path / "b1" / f"{s}.png"), png(tmp_path / "b3" / f"{s}.png")
        assert np.abs(a - b).max() <= 1
        assert np.abs(a - png(tmp_path / "det" / f"{s}.png")).mean() > 1  # eta did something


def test_minmax_pixels(tmp_path, capsys, noise_dir, model_args):
    assert run(capsys, "sample", noise_dir, tmp_path / "o", *model_args, "--to-pixels", "minmax")[0] == 0
    for s in ("00", "01", "02"):
        im = png(tmp_path / "o" / f"{s}.png")
        assert im.min() == 0 and im.max() == 255


def test_mse(tmp_path, capsys, noise_dir, model_args):
    run(capsys, "sample", noise_dir, tmp_path / "out", *model_args)
    shutil.copytree(tmp_path / "out", tmp_path / "gt")
    im = png(tmp_path / "gt" / "01.png").astype(np.uint8)
    im[5, 6, 1] = (int(im[5, 6, 1]) + 10) % 256 if im[5, 6, 1] < 246 else im[5, 6, 1] - 10
    Image.fromarray(im).save(tmp_path / "gt" / "01.png")
    rc, out, _ = run(capsys, "mse", tmp_path / "out", tmp_path / "gt")
    assert rc == 0 and "0-255 scale" in out and "0-1 scale" in out
    rows = {line.split()[0]: line.split()[1:] for line in out.splitlines()[1:]}
    want = 100 / (28 * 28 * 3)
    assert float(rows["00"][0]) == 0 and abs(float(rows["01"][0]) - want) < 1e-6
    assert abs(float(rows["01"][1]) - want / 255**2) < 1e-9
    assert abs(float(rows["mean"][0]) - want / 3) < 1e-6
    assert rows["00"][2] == "0" and rows["01"][2] == "10" and rows["mean"][2] == "10"
    # a GT image without an output, and an output of another size
    (tmp_path / "out" / "02.png").unlink()
    rc, _, err = run(capsys, "mse", tmp_path / "out", tmp_path / "gt")
    assert rc == 2 and "missing pairs" in err and "02" in err and err.count("\n") == 1
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(tmp_path / "out" / "02.png")
    rc, _, err = run(capsys, "mse", tmp_path / "out", tmp_path / "gt")
    assert rc == 2 and "size 32x32" in err


def test_eta_grid(tmp_path, capsys, noise_dir, model_args):
    rc, out, _ = run(capsys, "eta-grid", tmp_path / "g", *model_args, "--etas", "0", "1", "--columns", "2",
                     "--noise-dir", noise_dir)
    assert rc == 0
    im = Image.open(tmp_path / "g" / "eta_grid.png")
    assert im.width > 2 * 84 and im.height > 2 * 84  # 28 px tiles upscaled x3, plus labels
    rc, _, err = run(capsys, "eta-grid", tmp_path / "g2", *model_args, "--etas", "0", "1.2")
    assert rc == 2 and "--etas must be in [0, 1]" in err


def test_interpolate(tmp_path, capsys, digits_ckpt, model_args):
    rc, out, _ = run(capsys, "interpolate", tmp_path / "i", *model_args, "--num", "3", "--seed", "5")
    assert rc == 0
    assert {p.name for p in (tmp_path / "i").iterdir()} == {"interpolation.png", "norms.csv", "norms.png"}
    lines = (tmp_path / "i" / "norms.csv").read_text().splitlines()
    assert lines[0] == "alpha,slerp_norm,lerp_norm,sqrt_D" and len(lines) == 4
    x0, x1 = make_noise(2, (3, 28, 28), 5)
    mid = lines[2].split(",")
    assert abs(float(mid[2]) - float((x0 + x1).norm() / 2)) < 1e-3  # lerp at 0.5
    assert abs(float(mid[1]) - float(x0.norm())) < 0.05 * float(x0.norm())  # slerp stays on the shell
    torch.save(x0, tmp_path / "a.pt")
    torch.save(x1[None], tmp_path / "b.pt")
    rc, out2, _ = run(capsys, "interpolate", tmp_path / "j", *model_args, "--num", "3",
                      "--noise-a", tmp_path / "a.pt", "--noise-b", tmp_path / "b.pt")
    assert rc == 0
    assert (tmp_path / "j" / "norms.csv").read_text() == (tmp_path / "i" / "norms.csv").read_text()


def test_invert_writes_noise_and_reports_round_trip(tmp_path, capsys, noise_dir, digits_ckpt, model_args):
    run(capsys, "sample", noise_dir, tmp_path / "img", *model_args)
    rc, out, _ = run(capsys, "invert", tmp_path / "img", tmp_path / "inv", *model_args)
    assert rc == 0 and "recon MSE (0-1)" in out
    model, _, _ = load_digit_model(digits_ckpt)
    eps = cfg_eps_fn(model, torch.full((3,), 4), torch.full((3,), 1), 2.0)
    x0 = torch.stack([torch.from_numpy(png(tmp_path / "img" / f"0{i}.png")) for i in range(3)])
    x0 = x0.permute(0, 3, 1, 2).float() / 127.5 - 1
    sampler = DDIMSampler(NoiseSchedule(), steps=5)
    with torch.no_grad():
        z = sampler.invert(eps, x0)  # the CLI default, one fixed-point iteration per step
        recon = sampler.sample(eps, z)
    for i in range(3):
        saved = torch.load(tmp_path / "inv" / f"0{i}.pt")
        assert saved.shape == (1, 3, 28, 28)
        torch.testing.assert_close(saved[0], z[i], atol=1e-4, rtol=1e-4)
        assert (tmp_path / "inv" / "reconstructed" / f"0{i}.png").is_file()
    mse = (((recon + 1) / 2).clamp(0, 1) - (x0 + 1) / 2).pow(2).flatten(1).mean(1)
    printed = [float(line.split()[1]) for line in out.splitlines() if line.startswith("0")]
    np.testing.assert_allclose(printed, mse.numpy(), rtol=1e-3)
    # the recovered noise is itself a valid NOISE_DIR
    assert run(capsys, "sample", tmp_path / "inv", tmp_path / "again", *model_args)[0] == 0


def test_inversion_round_trip_converges_on_an_exact_model():
    # Data ~ N(0, s^2 I) has the exact eps(x_t, t) = sqrt(1-a) x_t / (a s^2 + 1 - a): the DDIM ODE is
    # then exact up to discretisation, so the round trip error must shrink fast with the step count.
    sched = NoiseSchedule()
    a = sched.alphas_cumprod.double()

    def eps(x, t):
        return ((1 - a[t]).sqrt() * x / (a[t] * 0.25 + 1 - a[t])).float()

    x0 = torch.rand(4, 3, 8, 8, generator=torch.Generator().manual_seed(0)) * 2 - 1
    err = {}
    for S in (10, 100):
        s = DDIMSampler(sched, steps=S)
        err[S] = float((s.sample(eps, s.invert(eps, x0, fixed_point_iters=0)) - x0).pow(2).mean())
    assert err[100] < 5e-4 and err[100] < err[10] / 20
    # fixed-point iterations solve each inverse step for eps(x_t, t) itself: far smaller error at the
    # same number of network calls (k per step, +1), shrinking further with k
    s, calls = DDIMSampler(sched, steps=50), [0]

    def counted(x, t):
        calls[0] += 1
        return eps(x, t)

    fp = {}
    for k in (0, 1, 2):
        calls[0] = 0
        z = s.invert(counted, x0, fixed_point_iters=k)
        assert calls[0] == (50 if k == 0 else 50 * k + 1)
        fp[k] = float((s.sample(eps, z) - x0).pow(2).mean())
    assert fp[1] < fp[0] / 20 and fp[2] < fp[1] / 20, fp


def test_other_model_sources(tmp_path, capsys, diffusers_dir):
    assert main(["ddim", "noise", str(tmp_path / "n"), "--count", "2", "--shape", "3", "8", "8"]) == 0
    rc, out, _ = run(capsys, "sample", tmp_path / "n", tmp_path / "o", "--diffusers-unet", diffusers_dir,
                     "--steps", "3", "--spacing", "trailing", "--clip-x0", "1")
    assert rc == 0 and Image.open(tmp_path / "o" / "00.png").size == (8, 8)
    (tmp_path / "m.py").write_text("import torch\n\nclass Net(torch.nn.Module):\n"
                                   "    def __init__(self, k=1.0):\n        super().__init__()\n"
                                   "        self.w = torch.nn.Parameter(torch.tensor(k))\n"
                                   "    def forward(self, x, t):\n        return self.w * x\n")
    torch.save({"state_dict": {"w": torch.tensor(0.5)}}, tmp_path / "w.pt")
    rc, out, _ = run(capsys, "sample", tmp_path / "n", tmp_path / "u", "--unet-module",
                     f"{tmp_path}/m.py:Net", "--weights", tmp_path / "w.pt", "--unet-kwargs", '{"k": 2.0}',
                     "--steps", "3")
    assert rc == 0 and "Net from w.pt (key 'state_dict')" in out


@pytest.mark.parametrize("extra,match", [
    (["--eta", "1.5"], "--eta must be in [0, 1]"),
    (["--steps", "0"], "--steps must be at least 1"),
    (["--steps", "2000"], "steps must be in [1, 1000]"),
    (["--batch-size", "0"], "--batch-size"),
    (["--offset", "1", "--spacing", "linspace"], "only applies to leading"),
    (["--digits-model", "nope.safetensors"], "nope.safetensors: model file not found"),
    (["--unet-module", "nope.py:UNet", "--weights", "w.pt"], "nope.py: model file not found"),
    (["--weights", "w.pt"], "--weights goes with --unet-module"),
    (["--diffusers-unet", "x", "--digit", "3"], "--digit only applies to the digit model"),
])
def test_bad_options(tmp_path, capsys, noise_dir, digits_ckpt, extra, match):
    argv = ["sample", noise_dir, tmp_path / "o"]
    if not any(a in extra for a in ("--digits-model", "--unet-module", "--weights", "--diffusers-unet")):
        argv += ["--digits-model", digits_ckpt]
    rc, _, err = run(capsys, *argv, *extra)
    assert rc == 2 and match in err and err.count("\n") == 1


def test_bad_noise_and_output_folder(tmp_path, capsys, noise_dir, model_args):
    bad = tmp_path / "bad"
    shutil.copytree(noise_dir, bad)
    torch.save(torch.full((1, 3, 28, 28), float("nan")), bad / "01.pt")
    rc, _, err = run(capsys, "sample", bad, tmp_path / "o", *model_args)
    assert rc == 2 and "01.pt: contains 2352 NaN/inf values" in err
    torch.save(torch.zeros(1, 3, 32, 32), bad / "01.pt")
    rc, _, err = run(capsys, "sample", bad, tmp_path / "o", *model_args)
    assert rc == 2 and "but the model takes (3, 28, 28)" in err
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x.txt").write_text("keep me")
    rc, _, err = run(capsys, "sample", noise_dir, tmp_path / "full", *model_args)
    assert rc == 2 and "--overwrite" in err and (tmp_path / "full" / "x.txt").exists()
    assert run(capsys, "sample", noise_dir, tmp_path / "full", *model_args, "--overwrite")[0] == 0


def test_cli_defaults_are_the_config_defaults():
    from difflab.cli import build_parser
    from difflab.ddim.cli import CONFIG_FLAGS
    from difflab.ddim.config import DDIMConfig

    d = DDIMConfig()
    seen = set()
    for argv in (["sample", "n", "o"], ["invert", "i", "o"]):
        args = build_parser().parse_args(["ddim", *argv])
        flags = [k for k in CONFIG_FLAGS if hasattr(args, k)]
        assert {k: getattr(args, k) for k in flags} == {k: getattr(d, k) for k in flags}
        seen.update(flags)
    assert seen == set(CONFIG_FLAGS)
