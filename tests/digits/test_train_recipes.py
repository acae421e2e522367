"""The recipe-search levers of `digits train` (issue 11): Min-SNR-gamma loss weighting and EMA snapshots."""

import math

import numpy as np
import pytest
import torch
from PIL import Image

from difflab.cli import main
from difflab.diffusion.schedule import NoiseSchedule
from difflab.errors import DifflabError
from difflab.io import load_checkpoint
from difflab.training.common import draw_timesteps, ema_warmup, inert_decays
from difflab.training.config import TrainConfig
from difflab.training.train import Trainer

from .conftest import TINY


def _data(n=16):
    g = torch.Generator().manual_seed(0)
    return (torch.randint(0, 256, (n, 3, 28, 28), generator=g, dtype=torch.uint8),
            torch.randint(0, 10, (n,), generator=g), torch.randint(0, 2, (n,), generator=g))


def _trainer(out, steps=7, **kw):
    cfg = TrainConfig(out_dir=str(out), steps=steps, batch_size=4, unet=TINY, ckpt_every=3, bf16=False,
                      warmup_steps=1, **kw)
    return Trainer(cfg, _data())


def _flat_weights(trainer) -> torch.Tensor:
    """Every trained parameter of `trainer`'s model in one vector."""
    return torch.cat([p.flatten() for p in trainer.model.parameters()])


def _linear_snr() -> np.ndarray:
    """SNR_t = a_t / (1 - a_t) (T,) of the linear schedule, built here in float64 (independent of the code)."""
    a_bar = np.cumprod(1 - np.linspace(1e-4, 0.02, 1000, dtype=np.float64))
    return a_bar / (1 - a_bar)


def test_min_snr_loss_is_the_papers_weighting(tmp_path):
    """min(SNR_t, gamma) / SNR_t per sample, from alpha_bar computed here in float64: 1 at high noise,
    gamma / SNR_t at low noise, and the plain epsilon MSE when gamma exceeds every SNR."""
    tr = _trainer(tmp_path, loss_weighting="min-snr", min_snr_gamma=5.0)
    g = torch.Generator().manual_seed(1)
    pred, noise = torch.randn(4, 3, 28, 28, generator=g), torch.randn(4, 3, 28, 28, generator=g)
    t = torch.tensor([0, 50, 400, 999])
    snr = _linear_snr()[t.numpy()]
    weight = np.minimum(snr, 5.0) / snr
    assert weight[-1] == 1.0 and weight[0] == pytest.approx(5.0 / snr[0]) and weight[0] < 1e-3
    per_sample = ((pred - noise) ** 2).mean(dim=(1, 2, 3)).double().numpy()
    assert tr._loss(pred, noise, t).item() == pytest.approx(float((weight * per_sample).mean()), rel=1e-4)
    huge = _trainer(tmp_path / "huge", loss_weighting="min-snr", min_snr_gamma=1e6)
    plain = _trainer(tmp_path / "plain")
    assert huge._loss(pred, noise, t).item() == pytest.approx(plain._loss(pred, noise, t).item(), rel=1e-5)
    assert plain._loss(pred, noise, t).item() == pytest.approx(torch.nn.functional.mse_loss(pred, noise).item())


def test_loss_weighting_per_domain_weights_each_image_by_its_own_domain(tmp_path):
    """mnistm=min-snr,svhn=eps: an MNIST-M image (label 0) takes Min-SNR's weight, an SVHN one (label 1)
    weight 1; the batch mean mixes the two, and naming one weighting for both domains is the plain form."""
    tr = _trainer(tmp_path, loss_weighting="mnistm=min-snr,svhn=eps", min_snr_gamma=5.0)
    g = torch.Generator().manual_seed(2)
    pred, noise = torch.randn(4, 3, 28, 28, generator=g), torch.randn(4, 3, 28, 28, generator=g)
    t, domains = torch.tensor([10, 10, 700, 50]), torch.tensor([0, 1, 0, 1])
    snr = _linear_snr()[t.numpy()]
    weight = np.where(domains.numpy() == 0, np.minimum(snr, 5.0) / snr, 1.0)
    assert weight[0] < 0.02 and weight[1] == 1.0
    per_sample = ((pred - noise) ** 2).mean(dim=(1, 2, 3)).double().numpy()
    assert tr._loss(pred, noise, t, domains).item() == pytest.approx(float((weight * per_sample).mean()), rel=1e-4)
    both = _trainer(tmp_path / "both", loss_weighting="mnistm=min-snr,svhn=min-snr", min_snr_gamma=5.0)
    alike = _trainer(tmp_path / "alike", loss_weighting="min-snr", min_snr_gamma=5.0)
    assert both._loss(pred, noise, t, domains).item() == alike._loss(pred, noise, t).item()
    assert _trainer(tmp_path / "eps", loss_weighting="svhn=eps,mnistm=eps")._loss(pred, noise, t).item() == \
        torch.nn.functional.mse_loss(pred, noise).item()


def test_loss_weighting_has_one_spelling_per_meaning():
    assert TrainConfig(loss_weighting="svhn=eps, mnistm=min-snr").loss_weighting == "mnistm=min-snr,svhn=eps"
    assert TrainConfig(loss_weighting="mnistm=eps,svhn=eps").loss_weighting == "eps"
    assert TrainConfig(loss_weighting="min-snr").loss_weighting == "min-snr"


def test_loss_weighting_per_domain_trains_and_is_recorded(tmp_path):
    """Same seed and batches as one weighting for all: other weights; the record keeps the spec."""
    a = _trainer(tmp_path / "a", steps=2, loss_weighting="min-snr")
    b = _trainer(tmp_path / "b", steps=2, loss_weighting="mnistm=min-snr,svhn=eps")
    a.fit(progress=False)
    b.fit(progress=False)
    assert torch.equal(a.gen.get_state(), b.gen.get_state())
    assert not torch.equal(_flat_weights(a), _flat_weights(b))
    _, meta = load_checkpoint(tmp_path / "b" / "ema.safetensors")
    assert meta["train"]["loss_weighting"] == "mnistm=min-snr,svhn=eps"


@pytest.mark.parametrize("schedule", ["linear", "scaled_linear", "cosine"])
def test_min_snr_weights_are_finite_and_in_0_1_on_every_schedule(tmp_path, schedule):
    """Every timestep of every schedule, the cosine's last ones (SNR near 0) included."""
    tr = _trainer(tmp_path, loss_weighting="min-snr", schedule=schedule)
    t = torch.arange(1000)
    pred, noise = torch.ones(1000, 3, 28, 28), torch.zeros(1000, 3, 28, 28)  # per-sample MSE 1: loss = mean weight
    loss = tr._loss(pred, noise, t)
    assert torch.isfinite(loss) and 0 < loss.item() <= 1


def test_min_snr_changes_the_training_but_not_its_randomness(tmp_path):
    """Same seed: same batches, so the two weightings differ in the update only (and do differ)."""
    a, b = _trainer(tmp_path / "a", steps=2), _trainer(tmp_path / "b", steps=2, loss_weighting="min-snr")
    a.fit(progress=False)
    b.fit(progress=False)
    assert torch.equal(a.gen.get_state(), b.gen.get_state())
    assert not torch.equal(_flat_weights(a), _flat_weights(b))


def test_uniform_timesteps_are_ddpms_randint_draw_for_draw():
    """The default draws what every earlier run drew (same generator calls), so old runs resume the same."""
    a_bar = NoiseSchedule().alphas_cumprod
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    assert torch.equal(draw_timesteps(a_bar, 64, g1), torch.randint(1000, (64,), generator=g2))
    assert torch.equal(g1.get_state(), g2.get_state())


def test_log_snr_normal_timesteps_are_the_nearest_level_to_normal_draws():
    """Each t is the level whose log-SNR is nearest its N(mean, std^2) draw (a brute-force reference on
    the same draws), and the share of t > 480 matches the normal's probability mass below the midpoint
    between levels 480 and 481 (20000 draws: 4 binomial sigmas)."""
    a_bar, lam = NoiseSchedule().alphas_cumprod, np.log(_linear_snr())
    g, ref = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    t = draw_timesteps(a_bar, 20000, g, "log-snr-normal", -1.0, 2.5)
    draws = (-1.0 + 2.5 * torch.randn(20000, generator=ref, dtype=torch.float64)).numpy()
    nearest = np.abs(lam[None, :] - draws[:, None]).argmin(axis=1)
    # the code's levels come from the schedule's float32 alpha_bar (1.7e-4 off in lambda): a draw that
    # close to the midpoint of two levels may take the other one, and only such a draw
    off = np.nonzero(t.numpy() != nearest)[0]
    gap = np.abs(lam[t.numpy()[off]] - draws[off]) - np.abs(lam[nearest[off]] - draws[off])
    assert t.dtype == torch.long and len(off) <= 5 and (gap < 1e-3).all()
    cut = (lam[480] + lam[481]) / 2
    p = 0.5 * (1 + math.erf((cut + 1.0) / (2.5 * math.sqrt(2))))  # P(lambda < cut) = P(t > 480)
    share = (t > 480).double().mean().item()
    assert abs(share - p) < 4 * math.sqrt(p * (1 - p) / 20000) and 0.25 < p < 0.35  # uniform: 0.519
    assert t.min() >= 0 and t.max() <= 999
    again = draw_timesteps(a_bar, 20000, torch.Generator().manual_seed(3), "log-snr-normal", -1.0, 2.5)
    assert torch.equal(t, again)


def test_log_snr_share_mixes_the_two_samplings_draw_for_draw():
    """--log-snr-share P: each t is the normal's nearest level where a uniform u < P, else a uniform level,
    rebuilt here from the same generator calls; at P = 1 the draws and the generator are as before."""
    a_bar, lam = NoiseSchedule().alphas_cumprod, np.log(_linear_snr())
    g, ref = torch.Generator().manual_seed(4), torch.Generator().manual_seed(4)
    t = draw_timesteps(a_bar, 20000, g, "log-snr-normal", -1.0, 2.5, share=0.5).numpy()
    draws = (-1.0 + 2.5 * torch.randn(20000, generator=ref, dtype=torch.float64)).numpy()
    uniform = torch.randint(1000, (20000,), generator=ref).numpy()
    from_normal = torch.rand(20000, generator=ref).numpy() < 0.5
    expected = np.where(from_normal, np.abs(lam[None, :] - draws[:, None]).argmin(axis=1), uniform)
    assert (t != expected).sum() <= 5  # float32 vs float64 levels, as in the test above
    assert abs(from_normal.mean() - 0.5) < 0.02 and (t[~from_normal] == uniform[~from_normal]).all()
    share = (t > 480).mean()  # halfway between the normal's 0.30 and uniform's 0.519
    assert 0.39 < share < 0.43
    g1, g2 = torch.Generator().manual_seed(4), torch.Generator().manual_seed(4)
    assert torch.equal(draw_timesteps(a_bar, 64, g1, "log-snr-normal", share=1.0),
                       draw_timesteps(a_bar, 64, g2, "log-snr-normal"))
    assert torch.equal(g1.get_state(), g2.get_state())


def test_log_snr_sampling_is_recorded_and_changes_the_training(tmp_path):
    """Same seed, other timesteps: other weights; the run's metadata names the sampling it used."""
    a, b = _trainer(tmp_path / "a", steps=2), _trainer(tmp_path / "b", steps=2, timestep_sampling="log-snr-normal")
    a.fit(progress=False)
    b.fit(progress=False)
    assert not torch.equal(_flat_weights(a), _flat_weights(b))
    _, meta = load_checkpoint(tmp_path / "b" / "ema.safetensors")
    assert meta["train"]["timestep_sampling"] == "log-snr-normal" and meta["train"]["log_snr_std"] == 2.5


def _driven(tr, seconds_per_step=10.0, start=0.0):
    """The run's clock moves only with its steps (machine speed does not matter)."""
    first = tr.step
    tr.clock = lambda: start + seconds_per_step * (tr.step - first)
    tr.leg_start = tr.clock()
    return tr


def test_snapshots_every_m_minutes_and_a_resume_keeps_the_earlier_ones(tmp_path):
    tr = _driven(_trainer(tmp_path, steps=7, snapshot_minutes=0.5))  # 10 s per step: a snapshot per 3 steps
    tr.fit(progress=False)
    snaps = tmp_path / "snapshots"
    assert sorted(p.name for p in snaps.iterdir()) == ["ema_0.5min.safetensors", "ema_1min.safetensors"]
    t05, m05 = load_checkpoint(snaps / "ema_0.5min.safetensors")
    assert m05["step"] == 3 and m05["train_run"]["wall_s"] == 30.0
    assert load_checkpoint(snaps / "ema_1min.safetensors")[1]["step"] == 6
    final = load_checkpoint(tmp_path / "ema.safetensors")[0]
    assert any(not torch.equal(t05[k], final[k]) for k in final)  # the snapshot is the EMA of its own time
    before = (snaps / "ema_1min.safetensors").stat().st_mtime_ns
    second = _trainer(tmp_path, steps=10, snapshot_minutes=0.5)
    second.resume("latest")  # from step 7 at 70 s
    _driven(second).fit(progress=False)
    assert (snaps / "ema_1min.safetensors").stat().st_mtime_ns == before
    assert load_checkpoint(snaps / "ema_1.5min.safetensors")[1]["step"] == 9  # 70 s + 2 steps = 90 s


def test_fresh_run_refuses_a_folder_with_snapshots_and_overwrite_drops_them(tmp_path):
    (tmp_path / "run" / "snapshots").mkdir(parents=True)
    (tmp_path / "run" / "snapshots" / "ema_60min.safetensors").write_bytes(b"old run")
    (tmp_path / "run" / "notes.txt").write_text("mine")
    args = ["digits", "train", "--out-dir", str(tmp_path / "run"), "--steps", "1", "--batch-size", "2",
            "--train-size", "4", "--base-channels", "8", "--channel-mults", "1", "--num-res-blocks", "1"]
    assert main(args) == 2
    assert main([*args, "--overwrite"]) == 0
    assert not (tmp_path / "run" / "snapshots").exists() and (tmp_path / "run" / "notes.txt").read_text() == "mine"


def _weights(path):
    return load_checkpoint(path)[0]


def test_extra_ema_is_what_a_run_with_that_decay_saves(tmp_path):
    """--extra-ema-decays D: OUT/emas/ema_D.safetensors equals, bit for bit, the ema.safetensors of a run
    with --ema-decay D, and the run's own EMA is the one it has without extras. The decays sit below the
    EMA's warm-up cap (1 + step) / (10 + step) over these 5 steps, so they really differ."""
    extra = _trainer(tmp_path / "extra", steps=5, extra_ema_decays=(0.05, 0.2))
    extra.fit(progress=False)
    plain, alone = _trainer(tmp_path / "plain", steps=5), _trainer(tmp_path / "alone", steps=5, ema_decay=0.2)
    plain.fit(progress=False)
    alone.fit(progress=False)
    kept, kept_meta = load_checkpoint(tmp_path / "extra" / "emas" / "ema_0.2.safetensors")
    assert kept_meta["train"]["ema_decay"] == 0.2 and kept_meta["train"]["extra_ema_decays"] == []
    assert kept_meta["step"] == 5
    same = _weights(tmp_path / "alone" / "ema.safetensors")
    assert all(torch.equal(kept[k], same[k]) for k in same)
    main_ema = _weights(tmp_path / "extra" / "ema.safetensors")
    plain_ema = _weights(tmp_path / "plain" / "ema.safetensors")
    assert all(torch.equal(main_ema[k], plain_ema[k]) for k in plain_ema)
    low = _weights(tmp_path / "extra" / "emas" / "ema_0.05.safetensors")
    assert any(not torch.equal(low[k], kept[k]) for k in kept)


def test_resume_restores_the_extra_emas_and_refuses_other_decays(tmp_path):
    first = _trainer(tmp_path, steps=3, extra_ema_decays=(0.05, 0.2))
    first.fit(progress=False)  # checkpoint at step 3
    second = _trainer(tmp_path, steps=6, extra_ema_decays=(0.05, 0.2))
    second.resume("latest")
    for a, b in zip(first.extra_emas, second.extra_emas, strict=True):
        sa, sb = a.state_dict(), b.state_dict()
        assert all(torch.equal(sa[k], sb[k]) for k in sa)
    other = _trainer(tmp_path, steps=6, extra_ema_decays=(0.2,))
    fresh = {k: v.clone() for k, v in other.model.state_dict().items()}
    with pytest.raises(DifflabError, match=r"--extra-ema-decays \[0.05, 0.2\], this resume asks for \[0.2\]"):
        other.resume("latest")
    assert all(torch.equal(v, fresh[k]) for k, v in other.model.state_dict().items())  # refused before loading


def test_ema_warmup_cap_and_the_decays_it_makes_inert():
    """The cap (1 + step) / (10 + step) reaches 0.999 only at update 8990: the one-hour runs' 8417 steps
    never used 0.999 or anything above it (docs/RESULTS.md §9), only 0.998 (from update 4490)."""
    assert ema_warmup(8990) >= 0.999 > ema_warmup(8989)
    assert inert_decays([0.999, 0.9995, 0.998], 8417) == [0.999, 0.9995]
    assert inert_decays([0.998], 4491) == [] and inert_decays([0.998], 4490) == [0.998]


def test_cli_extra_emas_are_written_and_overwrite_drops_them(tmp_path, capsys):
    args = ["digits", "train", "--out-dir", str(tmp_path / "run"), "--steps", "2", "--batch-size", "2",
            "--train-size", "4", "--base-channels", "8", "--channel-mults", "1", "--num-res-blocks", "1"]
    assert main([*args, "--extra-ema-decays", "0.5", "0.9"]) == 0
    assert sorted(p.name for p in (tmp_path / "run" / "emas").iterdir()) == ["ema_0.5.safetensors",
                                                                           "ema_0.9.safetensors"]
    # 2 steps: the cap stays at 2 / 11, below every decay: the CLI says so, and the files are the same
    assert "note: EMA decay 0.999, 0.5, 0.9 never took effect in 2 steps" in capsys.readouterr().out
    half, most = (_weights(tmp_path / "run" / "emas" / f"ema_{d}.safetensors") for d in ("0.5", "0.9"))
    assert all(torch.equal(half[k], most[k]) for k in most)
    assert main([*args, "--overwrite"]) == 0
    assert not (tmp_path / "run" / "emas").exists()


@pytest.mark.parametrize("field, value, message", [
    ("loss_weighting", "snr", "unknown --loss-weighting 'snr'"), ("min_snr_gamma", 0.0, "--min-snr-gamma"),
    ("loss_weighting", "mnistm=min-snr", "does not say how to weight svhn"),
    ("loss_weighting", "mnistm=min-snr,usps=eps", "unknown domain 'usps'"),
    ("loss_weighting", "mnistm=eps,mnistm=eps,svhn=eps", "repeated domain 'mnistm'"),
    ("loss_weighting", "mnistm=snr,svhn=eps", "unknown --loss-weighting 'snr'"),
    ("timestep_sampling", "lognormal", "unknown --timestep-sampling 'lognormal'"),
    ("log_snr_std", 0.0, "--log-snr-std"), ("log_snr_mean", float("nan"), "--log-snr-mean"),
    ("log_snr_share", 0.0, r"--log-snr-share must be in \(0, 1\]"), ("log_snr_share", 1.5, "--log-snr-share"),
    ("log_snr_share", 0.5, "--log-snr-share 0.5 mixes --timestep-sampling log-snr-normal with uniform draws; "
                           "this run samples 'uniform'"),
    ("snapshot_minutes", 0.0, "--snapshot-minutes"), ("snapshot_minutes", float("inf"), "--snapshot-minutes"),
    ("extra_ema_decays", (1.0,), r"--extra-ema-decays must be in \[0, 1\)"),
    ("extra_ema_decays", (0.999,), "must differ from each other and from --ema-decay 0.999"),
    ("extra_ema_decays", (0.5, 0.5), "must differ from each other"),
])
def test_config_refuses_bad_recipe_settings(field, value, message):
    with pytest.raises(DifflabError, match=message):
        TrainConfig(**{field: value})


@pytest.mark.parametrize("flags", [["--loss-weighting", "snr"], ["--loss-weighting", "svhn=eps"],
                                   ["--min-snr-gamma", "-1"],
                                   ["--snapshot-minutes", "nan"], ["--log-snr-std", "-2"],
                                   ["--timestep-sampling", "edm"], ["--log-snr-share", "0.5"]])
def test_cli_bad_recipe_flags_are_one_line(tmp_path, capsys, flags):
    try:
        rc = main(["digits", "train", "--out-dir", str(tmp_path / "run"), *flags])
    except SystemExit as e:  # argparse refuses a value outside --timestep-sampling's choices itself
        rc = e.code
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2
    assert len(err) == 1 and flags[0] in err[0] and not (tmp_path / "run").exists()


def test_time_to_quality_plot_draws_every_curve(tmp_path):
    from difflab.digits.quality import plot_time_to_quality

    def point(minutes, acc, fd):
        return {"minutes": minutes, "step": 1, "acc": {"mnistm": acc, "svhn": acc},
                "fd": {"mnistm": fd, "svhn": fd}, "fd_real_vs_real": {"mnistm": 0.4, "svhn": 0.4}}

    curves = {"old": [point(5, 0.5, 9.0), point(10, 0.7, 3.0)], "new": [point(5, 0.8, 2.0), point(10, 0.99, 0.6)]}
    plot_time_to_quality(curves, tmp_path / "q.png", "t")
    image = np.asarray(Image.open(tmp_path / "q.png").convert("RGB"))
    assert image.shape[0] > 300 and image.shape[1] > 600
    colours = {tuple(c) for c in image.reshape(-1, 3)[::7]}
    assert (31, 119, 180) in colours and (255, 127, 14) in colours  # matplotlib's first two line colours
