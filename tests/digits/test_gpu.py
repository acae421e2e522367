"""Real-GPU checks (marker `gpu`): skipped with the reason shown where CUDA is absent; run on a lent card by
scripts/gpu_check.sh. Tiny models, a few seconds each."""

import pytest
import torch

from difflab import device as D
from difflab.diffusion.schedule import NoiseSchedule
from difflab.digits.generate import GenerateConfig, sample_chunks

from .concept_helpers import run
from .conftest import TINY
from .test_ddp import assert_same_state, run_ranks

pytestmark = pytest.mark.gpu


def _images(model, device: str, **kw) -> torch.Tensor:
    cfg = GenerateConfig(**{"per_digit": 2, "model": "teacher", "sampler": "ddim", "steps": 4, "guidance": 2.0,
                            "batch_size": 16, "device": device, **kw})
    return torch.cat([x for _, x in sample_chunks(model, NoiseSchedule(), cfg, progress=False)])


def test_auto_is_cuda_and_autocast_follows_the_card():
    dev = D.resolve_device("auto")
    assert dev.type == "cuda" and D.available_devices()[1] == "cuda:0"
    want = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    assert D.autocast_dtype(dev) == want
    with D.autocast(dev):
        assert torch.get_autocast_dtype("cuda") == want


def test_starting_noise_is_the_cpus(tiny_unet):
    shape = (5, 3, 28, 28)
    on_card = D.randn(shape, D.cpu_generator(3), "cuda")
    assert on_card.device.type == "cuda"
    assert torch.equal(on_card.cpu(), torch.randn(shape, generator=torch.Generator().manual_seed(3)))


@pytest.mark.parametrize("kw", [{}, {"eta": 0.5}, {"sampler": "ddpm"}, {"bf16": False}])
def test_same_seed_same_images_on_the_card_and_close_to_the_cpu(tiny_unet, kw):
    a = _images(tiny_unet, "cuda", **kw)
    b = _images(tiny_unet, "cuda", **kw)
    assert a.device.type == "cpu" and torch.equal(a, b)  # same seed -> same images on the same device
    if kw.get("bf16") is False:  # fp32 on both: only the card's arithmetic differs (TF32 convs, order)
        c = _images(tiny_unet.cpu(), "cpu", **kw)
        assert (a - c).abs().mean() < 1e-2, (a - c).abs().max()


def test_training_distillation_and_ddim_run_on_the_card(tmp_path, tiny_unet):
    from difflab.ddim.config import DDIMConfig
    from difflab.ddim.run import run_sampler
    from difflab.models.digits import save_digit_model
    from difflab.models.loaders import load_digits
    from difflab.training import distill as Dl
    from difflab.training import trajectories as Tj
    from difflab.training.config import TrainConfig
    from difflab.training.train import Trainer

    g = torch.Generator().manual_seed(0)
    data = (torch.randint(0, 256, (16, 3, 28, 28), generator=g, dtype=torch.uint8),
            torch.randint(0, 10, (16,), generator=g), torch.randint(0, 2, (16,), generator=g))
    tr = Trainer(TrainConfig(out_dir=str(tmp_path / "t"), steps=3, batch_size=8, unet=TINY, warmup_steps=1),
                 data=data)
    assert tr.device.type == "cuda" and next(tr.model.parameters()).is_cuda
    assert all(torch.isfinite(torch.tensor(tr.train_step())) for _ in range(3))
    tr.save()
    again = Trainer(TrainConfig(out_dir=str(tmp_path / "t"), steps=3, batch_size=8, unet=TINY, warmup_steps=1),
                    data=data)
    again.resume("latest")
    assert again.step == 3 and torch.equal(again.model.conv_in.weight, tr.model.conv_in.weight)

    sched = NoiseSchedule()
    dc = Dl.DistillConfig(out_dir=str(tmp_path / "d"), student_steps=2, teacher_steps=4, trajectories=4,
                          traj_batch=2, steps=2, batch_size=4, warmup_steps=1)
    folder = Tj.make_trajectories(dc, tiny_unet, sched, progress=False)
    st = Dl.StudentTrainer(dc, tiny_unet, sched, Tj.load_trajectories(folder, Tj.student_timesteps(sched, 2)))
    assert st.device.type == "cuda" and all(torch.isfinite(torch.tensor(st.train_step())) for _ in range(2))

    save_digit_model(tmp_path / "m.safetensors", tiny_unet, sched)
    m = load_digits(tmp_path / "m.safetensors", 3, "svhn", 2.0)
    assert m.device.type == "cuda"
    c = DDIMConfig(steps=4, eta=0.5)
    noise = torch.randn(3, 3, 28, 28, generator=torch.Generator().manual_seed(1))
    x = [run_sampler(m, c.sampler(c.schedule(m.schedule)), noise, 0, 2, progress=False) for _ in range(2)]
    assert x[0].device.type == "cpu" and torch.equal(x[0], x[1])


def test_cli_generate_on_the_card(tmp_path, capsys):
    from difflab.cli import main

    assert main(["digits", "generate", str(tmp_path / "out"), "--model", "teacher", "--per-digit", "1",
                 "--device", "cuda"]) == 0
    assert len(list((tmp_path / "out" / "svhn").glob("*.png"))) == 10
    assert main(["digits", "eval", str(tmp_path / "out"), "--device", "cuda"]) == 0


@pytest.mark.parametrize("method", ["ti", "lora"])
def test_personalization_on_the_card(tmp_path, base, symbol_dir, method):
    from difflab.concepts.concept import load_concept

    if method == "lora":
        pytest.importorskip("peft")
    kw = dict(kind="digit", name="star", domain="svhn", method=method, device="cuda", eval_per_digit=1,
              **({"rank": 2} if method == "lora" else {}))
    torch.cuda.reset_peak_memory_stats()
    a = load_concept(run(symbol_dir, tmp_path / "a", base, **kw).path)
    assert torch.cuda.max_memory_allocated() > 0  # it ran on the card
    b = load_concept(run(symbol_dir, tmp_path / "b", base, **kw).path)
    # same seed, same card: the same concept up to cuDNN's backward kernels, which may sum in any order
    assert torch.allclose(a.row, b.row, atol=1e-4) and not torch.equal(a.row, torch.zeros_like(a.row))
    for k in a.lora or {}:
        assert torch.allclose(a.lora[k], b.lora[k], atol=1e-4), k


@pytest.mark.parametrize("argv", [["digits", "generate", "{out}"], ["report", "{out}"], ["ddim", "eta-grid", "{out}"],
                                  ["digits", "train", "--out-dir", "{out}"]])
def test_a_card_that_is_not_there_is_refused_in_one_line(tmp_path, capsys, argv):
    from difflab.cli import main

    n = torch.cuda.device_count()
    out = tmp_path / "out"
    assert main([a.format(out=out) for a in argv] + ["--device", f"cuda:{n}"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"--device cuda:{n}:" in err and f"cuda:{n - 1})" in err, err
    assert not out.exists()


@pytest.mark.skipif(not torch.cuda.is_available() or torch.cuda.device_count() < 2,
                    reason="needs 2 CUDA GPUs for NCCL (fewer here)")
def test_two_gpus_nccl_ranks_identical(tmp_path):
    r0, r1 = run_ranks(tmp_path, "cuda")
    assert r0["backend"] == "nccl" and {r0["device"], r1["device"]} == {"cuda:0", "cuda:1"}
    assert_same_state(r0["state"], r1["state"], "rank 0 vs rank 1")
    assert_same_state(r0["resumed"], r1["resumed"], "resumed: rank 0 vs rank 1")
