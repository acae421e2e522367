"""The three model loaders, each with a tiny random model saved to disk and loaded back."""

import json
import textwrap

import pytest
import torch
from safetensors.torch import save_file

from difflab.errors import DifflabError
from difflab.models.digits import load_digit_model
from difflab.models.loaders import load_diffusers_unet, load_digits, load_user_unet

USER_UNET = textwrap.dedent('''
    import torch
    from torch import nn
    from helper_block import Block   # a sibling module: the file's folder must be importable


    class UNet(nn.Module):
        def __init__(self, ch=8, in_ch=3):
            super().__init__()
            self.inp = nn.Conv2d(in_ch, ch, 3, padding=1)
            self.t = nn.Linear(1, ch)
            self.mid = Block(ch)
            self.out = nn.Conv2d(ch, in_ch, 3, padding=1)

        def forward(self, x, t):
            h = self.inp(x) + self.t(t.float()[:, None] / 1000)[:, :, None, None]
            return self.out(torch.relu(self.mid(h)))


    class Helper(nn.Module):
        pass
''')
BLOCK = textwrap.dedent('''
    from torch import nn


    class Block(nn.Conv2d):
        def __init__(self, ch):
            super().__init__(ch, ch, 1)
''')


@pytest.fixture
def user_model(tmp_path, monkeypatch):
    """(spec, reference net): the net is built by importing the file independently of our loader."""
    import importlib.util

    (tmp_path / "UNet.py").write_text(USER_UNET)
    (tmp_path / "helper_block.py").write_text(BLOCK)
    monkeypatch.syspath_prepend(str(tmp_path))
    s = importlib.util.spec_from_file_location("ref_unet", tmp_path / "UNet.py")
    mod = importlib.util.module_from_spec(s)
    s.loader.exec_module(mod)
    torch.manual_seed(3)
    return f"{tmp_path / 'UNet.py'}:UNet", mod.UNet(ch=8).eval()


def _save(path, obj):
    torch.save(obj, path)
    return path


X = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("wrap", ["plain", "state_dict", "model", "ema_first", "module_prefix",
                                  "safetensors"])
def test_user_module_weight_layouts(tmp_path, user_model, wrap):
    spec, net = user_model
    state = net.state_dict()
    other = {k: torch.zeros_like(v) for k, v in state.items()}
    obj = {"plain": state, "state_dict": {"state_dict": state, "step": 3},
           "model": {"model": state, "opt": {}},
           "ema_first": {"model": other, "ema": state},
           "module_prefix": {f"module.{k}": v for k, v in state.items()}}.get(wrap)
    if wrap == "safetensors":
        path = tmp_path / "w.safetensors"
        save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    else:
        path = _save(tmp_path / "w.pt", obj)
    m = load_user_unet(spec, path, '{"ch": 8}')
    with torch.no_grad():
        want = net(X, torch.full((2,), 321))
        assert want.abs().max() > 0
        torch.testing.assert_close(m(X, 321), want, rtol=0, atol=0)
    assert m.sample_shape is None and m.schedule is None


def test_weights_key_option(tmp_path, user_model):
    spec, net = user_model
    path = _save(tmp_path / "w.pt", {"ema": {k: torch.zeros_like(v) for k, v in net.state_dict().items()},
                                     "model": net.state_dict()})
    m = load_user_unet(spec, path, '{"ch": 8}', weights_key="model")
    with torch.no_grad():
        torch.testing.assert_close(m(X, 5), net(X, torch.full((2,), 5)))
    with pytest.raises(DifflabError, match="no key 'nope'"):
        load_user_unet(spec, path, '{"ch": 8}', weights_key="nope")


def test_user_module_bad_inputs(tmp_path, user_model):
    spec, net = user_model
    good = _save(tmp_path / "good.pt", net.state_dict())
    with pytest.raises(DifflabError, match="missing.py: model file not found"):
        load_user_unet(f"{tmp_path / 'missing.py'}:UNet", good)
    with pytest.raises(DifflabError, match=r"no class 'UNet2'.*found: Helper, UNet"):
        load_user_unet(spec.replace(":UNet", ":UNet2"), good)
    with pytest.raises(DifflabError, match="file.py:ClassName"):
        load_user_unet(str(tmp_path / "UNet.py"), good)
    with pytest.raises(DifflabError, match="weights file not found"):
        load_user_unet(spec, tmp_path / "nope.pt", '{"ch": 8}')
    with pytest.raises(DifflabError, match="not valid JSON"):
        load_user_unet(spec, good, "{ch: 8}")
    with pytest.raises(DifflabError, match="building UNet"):
        load_user_unet(spec, good, '{"channels": 8}')
    # weights of another width: shape mismatch; dropped/extra keys: both listed
    with pytest.raises(DifflabError, match=r"shape mismatch at inp.weight: file \(8, 3, 3, 3\) vs model \(4"):
        load_user_unet(spec, good, '{"ch": 4}')
    state = dict(net.state_dict())
    state.pop("out.bias")
    state["extra.weight"] = torch.zeros(1)
    with pytest.raises(DifflabError,
                       match=r"missing keys 1 \(out.bias\); unexpected keys 1 \(extra.weight\)"):
        load_user_unet(spec, _save(tmp_path / "bad.pt", state), '{"ch": 8}')
    with pytest.raises(DifflabError, match="not a state dict of tensors"):
        load_user_unet(spec, _save(tmp_path / "list.pt", [1, 2]), '{"ch": 8}')
    (tmp_path / "junk.pt").write_bytes(b"not a pickle")
    with pytest.raises(DifflabError, match="not a readable state dict"):
        load_user_unet(spec, tmp_path / "junk.pt", '{"ch": 8}')
    (tmp_path / "Broken.py").write_text("import torch\nraise RuntimeError('boom')\n")
    with pytest.raises(DifflabError, match=r"Broken.py: importing it failed \(RuntimeError: boom\)"):
        load_user_unet(f"{tmp_path / 'Broken.py'}:UNet", good)


def test_user_model_output_checks(tmp_path):
    (tmp_path / "m.py").write_text(textwrap.dedent('''
        import torch
        from torch import nn

        class Sigma(nn.Module):          # improved-diffusion layout: 2C channels [eps, variance]
            def __init__(self):
                super().__init__()
                self.w = nn.Parameter(torch.ones(1))
            def forward(self, x, t):
                return torch.cat([x * self.w, -x], 1)

        class Wrong(Sigma):
            def forward(self, x, t):
                return x[:, :1]
    '''))
    path = _save(tmp_path / "w.pt", {"w": torch.full((1,), 2.0)})
    m = load_user_unet(f"{tmp_path / 'm.py'}:Sigma", path)
    torch.testing.assert_close(m(X, 1), 2 * X)
    m = load_user_unet(f"{tmp_path / 'm.py'}:Wrong", path)
    with pytest.raises(DifflabError, match=r"output shape \(2, 1, 8, 8\) != input shape \(2, 3, 8, 8\)"):
        m(X, 1)


def test_digits_loader_is_cfg_of_the_checkpoint(digits_ckpt):
    model, schedule, _ = load_digit_model(digits_ckpt)
    m = load_digits(digits_ckpt, digit=7, domain="svhn", guidance=2.5)
    assert m.sample_shape == (3, 28, 28)
    assert m.schedule == {"kind": "linear", "num_train_timesteps": 1000, "beta_start": 1e-4, "beta_end": 2e-2}
    for B in (3, 1):  # different batch sizes in one run (a last, smaller batch)
        x = torch.randn(B, 3, 28, 28)
        t = torch.full((B,), 400)
        with torch.no_grad():
            cond = model(x, t, torch.full((B,), 7), torch.full((B,), 1))
            uncond = model(x, t, torch.full((B,), 10), torch.full((B,), 2))
            torch.testing.assert_close(m(x, 400), uncond + 2.5 * (cond - uncond), atol=1e-5, rtol=1e-4)


def test_digits_loader_bad_inputs(tmp_path, digits_ckpt):
    with pytest.raises(DifflabError, match="model file not found"):
        load_digits(tmp_path / "nope.safetensors")
    with pytest.raises(DifflabError, match="--digit must be in 0..9"):
        load_digits(digits_ckpt, digit=10)
    with pytest.raises(DifflabError, match="--domain"):
        load_digits(digits_ckpt, domain="cifar")
    with pytest.raises(DifflabError, match="--guidance"):
        load_digits(digits_ckpt, guidance=-1)


def test_diffusers_loader_round_trip(diffusers_dir):
    from diffusers import UNet2DModel

    ref = UNet2DModel.from_pretrained(diffusers_dir).eval()
    m = load_diffusers_unet(diffusers_dir)
    assert m.sample_shape == (3, 8, 8) and m.schedule is None
    with torch.no_grad():
        torch.testing.assert_close(m(X, 250), ref(X, 250).sample, rtol=0, atol=0)


def test_diffusers_scheduler_config_and_pipeline_layout(tmp_path, diffusers_dir):
    import shutil

    from diffusers import DDPMScheduler

    pipe = tmp_path / "pipe"
    shutil.copytree(diffusers_dir, pipe / "unet")
    sched = DDPMScheduler(num_train_timesteps=500, beta_schedule="squaredcos_cap_v2")
    sched.save_pretrained(pipe / "scheduler")
    m = load_diffusers_unet(pipe)
    assert m.schedule == {"kind": "cosine", "num_train_timesteps": 500, "beta_start": 1e-4, "beta_end": 0.02}
    cfg = json.loads((pipe / "scheduler" / "scheduler_config.json").read_text())
    cfg["prediction_type"] = "v_prediction"
    (pipe / "scheduler" / "scheduler_config.json").write_text(json.dumps(cfg))
    with pytest.raises(DifflabError, match="only epsilon models"):
        load_diffusers_unet(pipe)


def test_diffusers_loader_bad_folder(tmp_path):
    with pytest.raises(DifflabError, match="no config.json"):
        load_diffusers_unet(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"_class_name": "UNet2DConditionModel"}))
    with pytest.raises(DifflabError, match="only UNet2DModel"):
        load_diffusers_unet(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"_class_name": "UNet2DModel", "sample_size": 8}))
    with pytest.raises(DifflabError, match="cannot load the UNet2DModel"):
        load_diffusers_unet(tmp_path)


def test_diffusers_missing_gives_a_clear_error(diffusers_dir, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "diffusers", None)  # makes `from diffusers import ...` fail
    with pytest.raises(DifflabError, match=r"needs diffusers: pip install 'difflab\[sd\]'"):
        load_diffusers_unet(diffusers_dir)


def test_shipped_digit_model_is_the_default():
    from difflab.models.digits import DEFAULT_MODEL

    if DEFAULT_MODEL.is_file():  # after the release training has written it
        m = load_digits()
        assert m.sample_shape == (3, 28, 28) and DEFAULT_MODEL.name in m.description
        assert m(torch.zeros(2, 3, 28, 28), 999).shape == (2, 3, 28, 28)
    else:
        with pytest.raises(DifflabError, match="shipped weights not built yet"):
            load_digits()


def test_user_weights_that_are_integers_or_not_finite_are_refused(tmp_path, user_model):
    spec, net = user_model
    state = {k: v.clone() for k, v in net.state_dict().items()}
    state["inp.weight"] = state["inp.weight"].round().to(torch.int32)  # would be cast back silently
    with pytest.raises(DifflabError, match=r"int.pt: tensor 'inp.weight' has dtype int32, expected float"):
        load_user_unet(spec, _save(tmp_path / "int.pt", state))
    state = {k: v.clone() for k, v in net.state_dict().items()}
    state["out.bias"][0] = float("nan")
    with pytest.raises(DifflabError, match=r"nan.pt: tensor 'out.bias' holds 1 NaN/inf"):
        load_user_unet(spec, _save(tmp_path / "nan.pt", state))


def test_scheduler_config_with_bad_json_is_one_line(tmp_path):
    (tmp_path / "config.json").write_text('{"_class_name": "UNet2DModel", "sample_size": 8, "sample_size": 16}')
    with pytest.raises(DifflabError, match="config.json: key 'sample_size' appears twice"):
        load_diffusers_unet(tmp_path)
    (tmp_path / "config.json").write_bytes(b'{"_class_name": "UNet\xff"}')
    with pytest.raises(DifflabError, match="config.json:1: model config is not UTF-8 text"):
        load_diffusers_unet(tmp_path)
