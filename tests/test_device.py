"""difflab.device without a GPU: the CUDA decisions are tested by patching torch.cuda's queries (a fake
machine with N cards), the CPU paths by running them. Real-GPU checks are in tests/digits/test_gpu.py."""

import contextlib

import pytest
import torch
import torch.distributed as dist

from difflab import device as D
from difflab.cli import main
from difflab.errors import DifflabError


@pytest.fixture
def fake_cuda(monkeypatch):
    """Pretend this machine has `n` CUDA cards (current device `current`, bf16 support `bf16`)."""

    def install(n: int, current: int = 0, bf16: bool = True):
        monkeypatch.setattr(torch.cuda, "is_available", lambda: n > 0)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: n)
        monkeypatch.setattr(torch.cuda, "current_device", lambda: current)
        monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: bf16)
        monkeypatch.setattr(torch.cuda, "device", lambda d: contextlib.nullcontext())

    monkeypatch.delenv(D.DEVICE_ENV, raising=False)  # the suite pins auto to the CPU; these tests decide
    return install


def test_cpu_machine(fake_cuda):
    fake_cuda(0)
    assert D.resolve_device("auto") == D.resolve_device(None) == torch.device("cpu")
    assert D.resolve_device(" CPU ") == D.resolve_device(torch.device("cpu")) == torch.device("cpu")
    assert D.available_devices() == ["cpu"]


@pytest.mark.parametrize("spec, message", [
    ("cuda", r"--device cuda: CUDA is not available on this machine \(devices here: cpu\)$"),
    ("cuda:0", r"CUDA is not available .*devices here: cpu\)$"),
    ("tpu", r"--device tpu: unknown device; use auto, cpu, cuda or cuda:N .*\(devices here: cpu\)$"),
    ("cpu:1", "unknown device"), ("cuda:x", "unknown device"), ("", "unknown device"), ("cuda:-1", "unknown"),
])
def test_bad_devices_on_a_cpu_machine(fake_cuda, spec, message):
    fake_cuda(0)
    with pytest.raises(DifflabError, match=message) as e:
        D.resolve_device(spec)
    assert "\n" not in str(e.value)


def test_gpu_machine(fake_cuda):
    fake_cuda(2, current=1)
    assert D.resolve_device("auto") == torch.device("cuda", 1)  # the current card, with its index
    assert D.resolve_device("cuda") == torch.device("cuda", 1)
    assert D.resolve_device("cuda:0") == torch.device("cuda", 0)
    assert D.resolve_device("cpu") == torch.device("cpu")
    assert D.available_devices() == ["cpu", "cuda:0", "cuda:1"]


def test_run_records_name_the_card_they_ran_on(fake_cuda, monkeypatch):
    from difflab.runtime import machine_line
    from difflab.training.common import run_record

    fake_cuda(2, current=1)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda d=None: f"Card {torch.device(d).index}")
    assert machine_line(2, "cuda:0").endswith(" 2 process(es), torch " + torch.__version__ + ", on Card 0")
    assert run_record(1.0, 1, device=torch.device("cuda", 1))["machine"].endswith(", on Card 1")
    assert machine_line(device="auto").endswith(", on Card 1")  # auto: the current card
    assert "on Card" not in machine_line(device="cpu") and "on Card" not in machine_line()


def test_index_beyond_the_last_card_names_the_cards(fake_cuda):
    fake_cuda(1)
    with pytest.raises(DifflabError, match=r"^--device cuda:7: this machine has 1 CUDA device "
                                           r"\(devices here: cpu, cuda:0\)$"):
        D.resolve_device("cuda:7")


def test_environment_chooses_what_auto_means(fake_cuda, monkeypatch):
    fake_cuda(1)
    monkeypatch.setenv(D.DEVICE_ENV, "cpu")
    assert D.resolve_device("auto") == torch.device("cpu")
    assert D.resolve_device("cuda") == torch.device("cuda", 0)  # an explicit flag wins over the variable
    monkeypatch.setenv(D.DEVICE_ENV, "cuda:3")
    with pytest.raises(DifflabError, match="cuda:3: this machine has 1 CUDA device"):
        D.resolve_device("auto")


@pytest.mark.parametrize("bf16, dtype, scaler", [(True, torch.bfloat16, False), (False, torch.float16, True)])
def test_autocast_dtype_follows_the_card(fake_cuda, bf16, dtype, scaler):
    fake_cuda(1, bf16=bf16)
    assert D.autocast_dtype("cuda:0") == dtype
    assert D.needs_grad_scaler("cuda:0", True) is scaler
    assert D.needs_grad_scaler("cuda:0", False) is False  # fp32: nothing to scale
    assert D.autocast_dtype("cpu") == torch.bfloat16 and not D.needs_grad_scaler("cpu", True)


def test_cpu_autocast_is_the_old_call():
    with D.autocast("cpu", enabled=True):
        assert torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16
    with D.autocast("cpu", enabled=False):
        assert not torch.is_autocast_enabled("cpu")
    assert not D.grad_scaler("cpu", True).is_enabled()


def test_noise_comes_from_the_cpu_generator_whatever_the_device():
    shape = (3, 3, 28, 28)
    expected = torch.randn(shape, generator=torch.Generator().manual_seed(5))
    assert torch.equal(D.randn(shape, D.cpu_generator(5), "cpu"), expected)
    # "meta" stands in for a card here: the numbers are drawn on the CPU, so the generator moves on
    # exactly as it does for a CPU draw (the next draw is the same)
    g, ref = D.cpu_generator(5), D.cpu_generator(5)
    assert D.randn(shape, g, "meta").device.type == "meta"
    torch.randn(shape, generator=ref)
    assert torch.equal(torch.randn(4, generator=g), torch.randn(4, generator=ref))


def test_backend_and_rank_devices(fake_cuda):
    assert D.distributed_backend(torch.device("cpu")) == "gloo"
    assert D.distributed_backend(torch.device("cuda", 1)) == "nccl"
    fake_cuda(0)
    assert D.rank_device("auto", 1, 2) == torch.device("cpu")
    fake_cuda(2)
    assert D.rank_device("auto", 1, 2) == torch.device("cuda", 1)  # LOCAL_RANK -> its own card
    assert D.rank_device("cuda", 0, 2) == torch.device("cuda", 0)
    assert D.rank_device("cuda:1", 0, 1) == torch.device("cuda", 1)  # one process per node: as named
    assert D.rank_device("cpu", 1, 2) == torch.device("cpu")
    with pytest.raises(DifflabError, match="--device cuda:1 with 2 processes per node: give --device cuda"):
        D.rank_device("cuda:1", 0, 2)
    with pytest.raises(DifflabError, match="LOCAL_RANK 2 needs a GPU of its own but this node has 2"):
        D.rank_device("auto", 2, 4)


def test_dist_env(monkeypatch):
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE"):
        monkeypatch.delenv(k, raising=False)
    assert D.dist_env() == (0, 1, 0, 1)
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    assert D.dist_env() == (3, 4, 1, 2)


class _Stop(Exception):
    pass


@pytest.mark.parametrize("cards, backend, current", [(0, "gloo", None), (2, "nccl", torch.device("cuda", 1))])
def test_trainer_joins_with_the_backend_of_its_device(fake_cuda, monkeypatch, cards, backend, current):
    """Rank 3 of 4 (2 per node) under torchrun: on a GPU node NCCL on cuda:LOCAL_RANK, else gloo."""
    from difflab.training.config import TrainConfig
    from difflab.training.train import Trainer

    fake_cuda(cards)
    for k, v in {"WORLD_SIZE": "4", "RANK": "3", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "2"}.items():
        monkeypatch.setenv(k, v)
    seen = {}
    monkeypatch.setattr(torch.cuda, "set_device", lambda d: seen.setdefault("current", d))
    monkeypatch.setattr(dist, "is_initialized", lambda: False)

    def init(backend_name, **kw):
        seen["backend"] = backend_name
        raise _Stop

    monkeypatch.setattr(dist, "init_process_group", init)
    with pytest.raises(_Stop):
        Trainer(TrainConfig(steps=1, batch_size=4))
    assert seen["backend"] == backend and seen.get("current") == current


@pytest.mark.parametrize("argv", [
    ["digits", "generate", "{out}"], ["demo", "{out}"], ["digits", "eval", "{out}"],
    ["digits", "train", "--out-dir", "{out}"], ["digits", "train-classifier", "--domain", "svhn", "--out",
                                                  "{out}/c.safetensors"],
    ["digits", "distill", "--out-dir", "{out}"],
    ["digits", "reverse", "{out}/r.png"], ["digits", "sweep", "{out}"], ["report", "{out}"],
    ["ddim", "sample", "{tmp}/noise", "{out}"], ["ddim", "eta-grid", "{out}"], ["ddim", "interpolate", "{out}"],
    ["ddim", "invert", "{tmp}/images", "{out}"],
    ["clip", "zeroshot", "{tmp}/images", "--model", "{tmp}/clip", "--out", "{out}"],
    ["ti", "train", "{out}", "--model", "{tmp}/sd", "--images", "{tmp}/images", "--token", "<x>",
     "--init-word", "cat"],
    ["ti", "generate", "{tmp}/prompts.json", "{out}", "--model", "{tmp}/sd", "--embeds", "{tmp}/e.safetensors"],
])
@pytest.mark.parametrize("device, message", [
    ("cuda", "CUDA is not available on this machine (devices here: cpu)"),
    ("cuda:7", "CUDA is not available on this machine (devices here: cpu)"),
    ("tpu", "unknown device; use auto, cpu, cuda or cuda:N (devices here: cpu)"),
])
def test_every_network_command_refuses_a_missing_device_in_one_line(tmp_path, capsys, argv, device, message):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: the refusal is for machines without it")
    out = tmp_path / "out"
    args = [a.format(out=out, tmp=tmp_path) for a in argv] + ["--device", device]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"--device {device}: {message}" in err, err
    assert not out.exists()
