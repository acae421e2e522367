"""Noise files (every bad input of the issue) and slerp / lerp against an independent numpy formula."""

import math

import numpy as np
import pytest
import torch

from difflab.ddim.interpolate import interpolation_noises, lerp, slerp
from difflab.ddim.noise import load_noise_dir, load_noise_file, save_noise
from difflab.errors import DifflabError


def test_noise_layouts_and_natural_order(tmp_path):
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(1, 3, 4, 4, generator=g), torch.randn(3, 4, 4, generator=g)
    torch.save(a, tmp_path / "10.pt")
    torch.save(b.double(), tmp_path / "2.pt")  # float64 is accepted and converted
    stems, x = load_noise_dir(tmp_path, expect=(3, 4, 4))
    assert stems == ["2", "10"]
    assert x.dtype == torch.float32 and x.shape == (2, 3, 4, 4)
    assert torch.equal(x[0], b) and torch.equal(x[1], a[0])
    save_noise(tmp_path / "out" / "00.pt", b)
    back = torch.load(tmp_path / "out" / "00.pt")
    assert back.shape == (1, 3, 4, 4) and torch.equal(back[0], b)


@pytest.mark.parametrize("obj,expect,match", [
    (torch.zeros(2, 3, 4, 4), None, r"shape \(2, 3, 4, 4\), expected \(1, C, H, W\) or \(C, H, W\)"),
    (torch.zeros(4, 4), None, r"shape \(4, 4\)"),
    (torch.zeros(1, 3, 4, 4, dtype=torch.int64), None, "dtype torch.int64, expected a float tensor"),
    ({"noise": torch.zeros(3, 4, 4)}, None, "contains a dict, not a tensor"),
    (torch.tensor([[[float("nan"), 0.0], [0.0, float("inf")]]]), None, "contains 2 NaN/inf values"),
    (torch.zeros(1, 3, 8, 8), (3, 4, 4), r"shape \(3, 8, 8\), but the model takes \(3, 4, 4\)"),
])
def test_bad_noise_files(tmp_path, obj, expect, match):
    torch.save(obj, tmp_path / "00.pt")
    with pytest.raises(DifflabError, match=match):
        load_noise_file(tmp_path / "00.pt", expect)
    with pytest.raises(DifflabError, match="noise file not found"):
        load_noise_file(tmp_path / "01.pt")


def test_bad_noise_folders(tmp_path):
    (tmp_path / "00.pt").write_bytes(b"\x00garbage")
    with pytest.raises(DifflabError, match="00.pt: not a readable torch .pt file"):
        load_noise_dir(tmp_path)
    torch.save(torch.zeros(3, 4, 4), tmp_path / "00.pt")
    torch.save(torch.zeros(3, 5, 5), tmp_path / "01.pt")
    with pytest.raises(DifflabError, match=r"01.pt: shape \(3, 5, 5\) differs from 00.pt's"):
        load_noise_dir(tmp_path)
    with pytest.raises(DifflabError, match="no .pt noise files"):
        load_noise_dir(_empty(tmp_path))
    with pytest.raises(DifflabError, match="noise folder not found"):
        load_noise_dir(tmp_path / "missing")


def _empty(tmp_path):
    d = tmp_path / "empty"
    d.mkdir()
    return d


def _np_slerp(a, b, t):  # textbook formula on flat float64 vectors
    a, b = a.ravel().astype(np.float64), b.ravel().astype(np.float64)
    th = math.acos(np.dot(a, b) / np.linalg.norm(a) / np.linalg.norm(b))
    return (math.sin((1 - t) * th) * a + math.sin(t * th) * b) / math.sin(th)


def test_slerp_matches_formula_and_endpoints():
    g = torch.Generator().manual_seed(0)
    x0, x1 = torch.randn(3, 8, 8, generator=g), torch.randn(3, 8, 8, generator=g)
    for t in (0.0, 0.1, 0.5, 0.9, 1.0):
        got = slerp(x0, x1, t)
        assert got.dtype == torch.float32 and got.shape == x0.shape
        np.testing.assert_allclose(got.numpy().ravel(), _np_slerp(x0.numpy(), x1.numpy(), t), atol=1e-5)
    torch.testing.assert_close(slerp(x0, x1, 0.0), x0)
    torch.testing.assert_close(slerp(x0, x1, 1.0), x1)
    e1, e2 = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])
    torch.testing.assert_close(slerp(e1, e2, 0.5), torch.tensor([1.0, 1.0]) / math.sqrt(2))


def test_slerp_falls_back_to_lerp_when_parallel():
    x = torch.randn(3, 4, 4)
    for other in (2 * x, -x):  # theta = 0 and theta = pi: sin(theta) = 0
        torch.testing.assert_close(slerp(x, other, 0.3), lerp(x, other, 0.3))
    with pytest.raises(DifflabError, match="cannot interpolate shapes"):
        slerp(x, torch.randn(3, 4, 5), 0.5)


def test_lerp_leaves_the_gaussian_shell_and_slerp_does_not():
    g = torch.Generator().manual_seed(1)
    x0, x1 = torch.randn(3, 28, 28, generator=g), torch.randn(3, 28, 28, generator=g)
    s, l = interpolation_noises(x0, x1, [0.0, 0.5, 1.0])
    radius = math.sqrt(x0.numel())
    assert abs(s[1].norm() / radius - 1) < 0.05  # on the shell
    assert abs(l[1].norm() / radius - math.sqrt(0.5)) < 0.05  # independent Gaussians: sqrt(1/2) of it
