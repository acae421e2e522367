import os
import subprocess
import sys

import pytest
import torch

from difflab.cli import main
from difflab.errors import DifflabError
from difflab.io import load_checkpoint
from difflab.models.digits import load_digit_model
from difflab.training.common import drop_conditions, lr_at
from difflab.training.config import TrainConfig
from difflab.training.train import Trainer, train

from .conftest import TINY


def _cfg(out, steps, **kw):
    kw = {"batch_size": 8, "train_size": 40, "unet": TINY, "ckpt_every": 3, "bf16": False, "warmup_steps": 2, **kw}
    return TrainConfig(out_dir=str(out), steps=steps, **kw)


def _params(model):
    return torch.cat([p.detach().flatten() for p in model.parameters()])


def test_loss_decreases(tmp_path):
    tr = Trainer(_cfg(tmp_path, 40, lr=2e-3))
    losses = [tr.train_step() for _ in range(40)]
    assert sum(losses[-10:]) / 10 < sum(losses[:10]) / 10


def test_resume_matches_uninterrupted_run(tmp_path):
    full = train(_cfg(tmp_path / "a", 8), progress=False)
    train(_cfg(tmp_path / "b", 8), progress=False)  # warm cache
    part = Trainer(_cfg(tmp_path / "c", 8))
    for _ in range(5):
        part.train_step()
    part.save()  # "crash" after step 5
    resumed = train(_cfg(tmp_path / "c", 8), resume="latest", progress=False)
    assert resumed.step == 8
    assert torch.equal(_params(full.model), _params(resumed.model))
    assert torch.equal(_params(full.ema), _params(resumed.ema))
    model, _, meta = load_digit_model(tmp_path / "c" / "ema.safetensors")
    assert torch.equal(_params(model), _params(full.ema)) and meta["step"] == 8


def test_resume_from_other_config_is_refused(tmp_path):
    train(_cfg(tmp_path, 3), progress=False)
    other = _cfg(tmp_path, 6)
    other.unet = type(TINY)(base_channels=8, channel_mults=(1, 2), num_res_blocks=1)
    with pytest.raises(DifflabError, match="another model config .--base-channels: the run has 16, this run asks "
                                           "for 8"):
        train(other, resume="latest", progress=False)


@pytest.mark.parametrize("change, message", [
    ({"lr": 2e-3}, "--lr: the run has 0.0005, this resume asks for 0.002"),
    ({"loss_weighting": "min-snr"}, "--loss-weighting: the run has 'eps', this resume asks for 'min-snr'"),
    ({"seed": 1}, "--seed: the run has 0, this resume asks for 1"),
    ({"time_budget": 5.0}, "--time-budget: the run has None, this resume asks for 5.0"),
    ({"timestep_sampling": "log-snr-normal"}, "--timestep-sampling: the run has 'uniform'"),
])
def test_resume_with_another_recipe_names_the_field_and_changes_nothing(tmp_path, change, message):
    """A resume continues one curve: a setting that shapes it must be the run's (named in the error);
    where and how often it writes, the device and --steps may change (the resumes above: more steps)."""
    train(_cfg(tmp_path, 3), progress=False)
    before = {f: (tmp_path / f).read_bytes() for f in ("checkpoint.safetensors", "ema.safetensors")}
    with pytest.raises(DifflabError, match="checkpoint.safetensors: " + message):
        train(_cfg(tmp_path, 6, **change), resume="latest", progress=False)
    assert {f: (tmp_path / f).read_bytes() for f in before} == before
    resumed = train(_cfg(tmp_path, 6, ckpt_every=2, log_every=7), resume="latest", progress=False)
    assert resumed.step == 6


def test_resume_of_a_record_without_newer_fields_takes_their_defaults(tmp_path):
    """A checkpoint written before a setting existed was trained at its default: resuming it with the
    default goes on, asking for anything else is refused (the error names the field)."""
    from difflab.io import save_checkpoint

    train(_cfg(tmp_path, 3), progress=False)
    tensors, meta = load_checkpoint(tmp_path / "checkpoint.safetensors")
    for key in ("loss_weighting", "min_snr_gamma", "timestep_sampling", "log_snr_mean", "log_snr_std"):
        del meta["train"][key]
    save_checkpoint(tmp_path / "checkpoint.safetensors", tensors, meta)
    with pytest.raises(DifflabError, match="--log-snr-std: the run has 2.5, this resume asks for 1.0"):
        train(_cfg(tmp_path, 5, log_snr_std=1.0), resume="latest", progress=False)
    assert train(_cfg(tmp_path, 5), resume="latest", progress=False).step == 5


def test_cli_resume_with_another_recipe_is_one_line(tmp_path, capsys):
    args = ["digits", "train", "--out-dir", str(tmp_path), "--steps", "2", "--batch-size", "4", "--train-size",
            "20", "--base-channels", "16", "--channel-mults", "1", "2", "--num-res-blocks", "1", "--no-bf16"]
    assert main(args) == 0
    capsys.readouterr()
    assert main([*args[:5], "3", *args[6:], "--batch-size", "8", "--resume", "latest"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--batch-size: the run has 4, this resume asks for 8" in err[0]


def test_loading_weights_into_other_config_names_the_problem(tmp_path):
    train(_cfg(tmp_path, 3), progress=False)
    tensors, meta = load_checkpoint(tmp_path / "ema.safetensors")
    meta["unet"]["base_channels"] = 24
    from difflab.io import save_checkpoint

    save_checkpoint(tmp_path / "bad.safetensors", tensors, meta)
    with pytest.raises(DifflabError, match="weights do not match the model config.*shape mismatch"):
        load_digit_model(tmp_path / "bad.safetensors")


def test_cli_error_is_one_line(tmp_path, capsys):
    (tmp_path / "junk.safetensors").write_bytes(b"not a checkpoint")
    code = main(["digits", "generate", str(tmp_path / "out"), "--model", str(tmp_path / "junk.safetensors")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "junk.safetensors" in err
    assert not (tmp_path / "out").exists()


def test_condition_dropout_rates():
    cfg = TrainConfig()
    g = torch.Generator().manual_seed(0)
    digits, domains = drop_conditions(torch.zeros(100000, dtype=torch.long), torch.zeros(100000, dtype=torch.long),
                                      g, cfg)
    both = ((digits == 10) & (domains == 2)).float().mean()
    assert abs(both - cfg.drop_both) < 0.005
    assert abs(((digits == 10) & (domains == 0)).float().mean() - cfg.drop_digit) < 0.005


def test_ddp_two_processes(tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29533",
           "-m", "difflab.cli", "digits", "train", "--out-dir", str(out), "--batch-size", "8",
           "--train-size", "40", "--base-channels", "16", "--channel-mults", "1", "2", "--num-res-blocks", "1",
           "--no-bf16", "--ckpt-every", "2", "--warmup-steps", "2"]
    r = subprocess.run(cmd + ["--steps", "4"], env=env, capture_output=True, text=True, timeout=240)
    assert r.returncode == 0, r.stdout[-1000:] + r.stderr[:3000]
    tensors, meta = load_checkpoint(out / "checkpoint.safetensors")
    assert meta["world_size"] == 2 and meta["step"] == 4
    assert "rng.0" in tensors and "rng.1" in tensors and not torch.equal(tensors["rng.0"], tensors["rng.1"])
    # resume under DDP continues from step 4 (replica agreement is checked inside fit)
    r = subprocess.run(cmd + ["--steps", "6", "--resume", "latest"], env=env,
                       capture_output=True, text=True, timeout=240)
    assert r.returncode == 0, r.stdout[-1000:] + r.stderr[:3000]
    assert load_checkpoint(out / "checkpoint.safetensors")[1]["step"] == 6


@pytest.mark.parametrize("field, value, message", [
    ("lr", float("nan"), "--lr must be a finite number"), ("lr", float("inf"), "--lr must be a finite number"),
    ("lr", 0.0, r"--lr must be in \(0, 1\]"), ("lr", 1e30, r"--lr must be in \(0, 1\]"),
    ("weight_decay", 1e30, "times --lr .* must be below 1"), ("seed", -1, "at least 0"),
    ("steps", 0, "--steps must be at least 1"), ("steps", 10**30, "--steps must be at most 2147483647"),
    ("steps", -5, "--steps must be at least 1"), ("batch_size", 0, "--batch-size must be at least 1"),
    ("ckpt_every", 0, "--ckpt-every must be at least 1"), ("log_every", 0, "--log-every must be at least 1"),
    ("warmup_steps", -1, "--warmup-steps must be at least 0"), ("train_size", 0, "--train-size must be at least 1"),
    ("ema_decay", 1.0, r"--ema-decay must be in \[0, 1\)"), ("drop_both", float("nan"), "finite"),
    ("drop_digit", 1.5, r"--drop-digit must be in \[0, 1\]"), ("grad_clip", -1.0, "--grad-clip"),
    ("num_train_timesteps", 0, "at least 1"), ("seed", 2**40, "below 2"),
    ("time_budget", 0.0, r"--time-budget must be in \(0, "), ("time_budget", -5.0, "--time-budget"),
    ("time_budget", float("nan"), "--time-budget must be a finite number"),
])
def test_config_refuses_impossible_settings(field, value, message):
    with pytest.raises(DifflabError, match=message):
        TrainConfig(**{field: value})


def test_condition_dropout_probabilities_must_sum_to_at_most_one():
    with pytest.raises(DifflabError, match="at most 1"):
        TrainConfig(drop_both=0.5, drop_digit=0.4, drop_domain=0.2)


@pytest.mark.parametrize("flags", [["--lr", "nan"], ["--steps", "0"], ["--ckpt-every", "0"], ["--batch-size", "0"],
                                   ["--time-budget", "0"]])
def test_cli_bad_numbers_are_one_line(tmp_path, capsys, flags):
    assert main(["digits", "train", "--out-dir", str(tmp_path / "run"), *flags]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and flags[0] in err and not (tmp_path / "run").exists()


def _data(n=16):
    g = torch.Generator().manual_seed(0)
    return (torch.randint(0, 256, (n, 3, 28, 28), generator=g, dtype=torch.uint8),
            torch.randint(0, 10, (n,), generator=g), torch.randint(0, 2, (n,), generator=g))


def test_fresh_run_refuses_another_runs_files(tmp_path):
    from difflab.outdir import inplace_output_dir
    from difflab.training.config import RUN_FILES

    def claim(**kw):  # train()'s folder policy on rank 0
        with inplace_output_dir(tmp_path, run_files=RUN_FILES, resume_flag="--resume latest", **kw):
            pass

    (tmp_path / "classifier.safetensors").write_bytes(b"x")  # other files are fine: training never touches them
    claim()
    (tmp_path / "ema.safetensors").write_bytes(b"x")
    with pytest.raises(DifflabError, match="already holds a run.*--resume latest.*--overwrite"):
        claim()
    with pytest.raises(DifflabError, match="already holds a run"):
        train(_cfg(tmp_path, 2), progress=False)
    claim(resume=True)
    claim(overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["classifier.safetensors", "ema.safetensors"]


def test_non_finite_loss_stops_and_writes_nothing(tmp_path, one_thread):
    cfg = TrainConfig(out_dir=str(tmp_path / "run"), steps=6, batch_size=2, unet=TINY, ckpt_every=3, bf16=False)
    tr = Trainer(cfg, data=_data())
    for _ in range(3):
        tr.train_step()
    tr.save()  # a good checkpoint at step 3
    before = (tmp_path / "run" / "checkpoint.safetensors").read_bytes()
    weights = _params(tr.model).clone()
    real = tr.net

    def nan_net(*args):
        return real(*args) * float("nan")

    tr.net = nan_net
    with pytest.raises(DifflabError, match="loss became nan at step 4"):
        tr.fit(progress=False)
    assert torch.equal(_params(tr.model), weights) and tr.step == 3  # no optimizer step on a NaN loss
    assert (tmp_path / "run" / "checkpoint.safetensors").read_bytes() == before
    assert not (tmp_path / "run" / "ema.safetensors").exists()


def test_time_budget_fits_the_steps_to_the_measured_step_time(tmp_path):
    """After the calibration steps the run's length is (time left) / (seconds per step)."""
    tr = Trainer(_cfg(tmp_path, 10**6, time_budget=100 / 60))
    tr.step, tr.leg_start = 20, __import__("time").time() - 10.0  # 10 s spent so far, 90 s left
    assert abs(tr._fit_steps_to_budget(100.0, 1.0) - 110) <= 1  # 20 done + 90 at 1 s each
    assert tr._fit_steps_to_budget(100.0, 1e6) == 21  # slower than the budget: still one more step


def test_time_budget_run_stops_saved_with_its_fitted_curve(tmp_path):
    """A clock at 0.25 s per step and a 10 s budget: 20 timed steps (5 s) fit 20 more, 40 in all; the
    cosine ends there, the run stops there with checkpoint and EMA saved, both recording the length."""
    from difflab.training.config import BUDGET_CALIBRATION_STEPS

    cfg = _cfg(tmp_path, 10**6, time_budget=10 / 60)
    tr = Trainer(cfg)
    tr.clock = lambda: 1000.0 + 0.25 * tr.step
    tr.leg_start = tr.clock()
    tr.fit(progress=False)
    assert BUDGET_CALIBRATION_STEPS == 20 and tr.total_steps == 40 and tr.step == 40
    _, meta = load_checkpoint(tmp_path / "checkpoint.safetensors")
    assert meta["step"] == 40 and meta["train_run"]["total_steps"] == 40
    assert meta["train_run"]["time_budget_min"] == pytest.approx(10 / 60)
    assert meta["train_run"]["wall_s"] == pytest.approx(10.0)
    assert load_digit_model(tmp_path / "ema.safetensors")[2]["step"] == 40
    assert lr_at(40, cfg, 40) == pytest.approx(cfg.lr * cfg.min_lr_ratio)
    # a slower machine than measured: the clock, not the fitted count, stops the run (saved)
    slow = Trainer(_cfg(tmp_path / "slow", 10**6, time_budget=10 / 60))
    slow.clock = lambda: 1000.0 + (0.25 * slow.step if slow.step <= 20 else 5 + 1.0 * (slow.step - 20))
    slow.leg_start = slow.clock()
    slow.fit(progress=False)
    assert slow.total_steps == 40 and slow.step == 25
    assert load_checkpoint(tmp_path / "slow" / "checkpoint.safetensors")[1]["step"] == 25


def test_time_budget_refits_when_the_machine_slows_down(tmp_path, monkeypatch):
    """0.25 s per step while calibrating, then 0.5 s (a slower hour), 40 s budget: the first fit (160
    steps) would be cut by the clock at step 90 mid-cosine; the re-fit (every 20 steps here, 200 in use)
    shortens the curve to end there, at the cosine's floor."""
    from difflab.models.unet import UNetConfig
    from difflab.training import train as train_module
    from difflab.training.config import BUDGET_CALIBRATION_STEPS, BUDGET_REFIT_STEPS

    assert (BUDGET_CALIBRATION_STEPS, BUDGET_REFIT_STEPS) == (20, 200)
    monkeypatch.setattr(train_module, "BUDGET_REFIT_STEPS", 20)
    # the smallest network and batch, one checkpoint at the end: 90 steps in a few seconds
    cfg = TrainConfig(out_dir=str(tmp_path), steps=10**6, batch_size=2, train_size=20, ckpt_every=10**6,
                      bf16=False, warmup_steps=2, time_budget=40 / 60,
                      unet=UNetConfig(base_channels=8, channel_mults=(1,), num_res_blocks=1))
    tr = Trainer(cfg)
    tr.clock = lambda: 0.25 * min(tr.step, 20) + 0.5 * max(0, tr.step - 20)
    tr.leg_start = tr.clock()
    totals, lrs = [], []
    step = tr.train_step
    tr.train_step = lambda: (totals.append(tr.total_steps), lrs.append(lr_at(tr.step, cfg, tr.total_steps)),
                             step())[2]
    tr.fit(progress=False)
    assert totals[20] == 160 and totals[40] == 90  # the first fit, then the re-fit from the slower steps
    assert tr.total_steps == 90 and tr.step == 90
    assert lrs[-1] == pytest.approx(lr_at(89, cfg, 90))
    assert lr_at(90, cfg, 90) == pytest.approx(cfg.lr * cfg.min_lr_ratio)
    assert load_checkpoint(tmp_path / "checkpoint.safetensors")[1]["train_run"]["total_steps"] == 90
