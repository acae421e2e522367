"""The guidance-input student and its distillation (tiny models; the real run is scripts/distill_release.sh).
Generating with a student: test_student_generate.py; the shared tiny run `distilled`: conftest.py."""

import time
from pathlib import Path

import pytest
import torch

from difflab.diffusion.schedule import NoiseSchedule
from difflab.errors import DifflabError
from difflab.io import inplace_output_dir, load_checkpoint, save_checkpoint
from difflab.models.digits import load_digit_model
from difflab.training.distill import (
    DistillConfig,
    StudentTrainer,
    distill,
    make_student,
)
from difflab.training.jumps import ddim_coefficients, student_sampler
from difflab.training.trajectories import load_trajectories, student_timesteps


def test_student_starts_as_the_teachers_conditional_branch(tiny_unet):
    student = make_student(tiny_unet).eval()
    x, t = torch.randn(4, 3, 28, 28), torch.tensor([999, 500, 20, 0])
    d, m = torch.tensor([1, 2, 3, 4]), torch.tensor([0, 1, 0, 1])
    with torch.no_grad():
        ref = tiny_unet(x, t, d, m)
        for w in (1.0, 3.0, 5.0):
            assert torch.equal(student(x, t, d, m, torch.full((4,), w)), ref)
    with pytest.raises(ValueError, match="guidance"):
        student(x, t, d, m)
    with pytest.raises(ValueError, match="no guidance input"):
        tiny_unet(x, t, d, m, torch.ones(4))


def test_distilled_target_lands_on_the_teachers_state(distilled):
    cfg, result = distilled
    schedule = NoiseSchedule()
    grid = student_timesteps(schedule, cfg.student_steps)
    assert grid == [999, 499]
    data = load_trajectories(f"{cfg.out_dir}/trajectories", grid)
    assert data["x"].shape == (12, 3, 3, 28, 28) and data["w"].min() >= 1 and data["w"].max() <= 5
    assert data["x"][:, -1].abs().max() <= 1  # the teacher's last DDIM step clips x0
    coef = ddim_coefficients(schedule, grid).float()
    sampler = student_sampler(schedule, cfg.student_steps)
    for k, t in enumerate(grid):
        x_t, x_next = data["x"][:, k], data["x"][:, k + 1]
        eps = (x_next - coef[k, 0] * x_t) / coef[k, 1]
        assert torch.allclose(sampler.step(eps, t, x_t).prev_sample, x_next, atol=2e-5)


def test_trajectories_match_the_teachers_ddim_run(distilled, tiny_unet):
    """Chunk 0's states are the teacher's own trailing DDIM run at those timesteps (same noise, same w)."""
    from difflab.diffusion.sampling import DDIMSampler
    from difflab.training.trajectories import guided_eps

    cfg, _ = distilled
    data = load_trajectories(f"{cfg.out_dir}/trajectories", [999, 499])
    n = cfg.traj_batch
    x_T, w = data["x"][:n, 0], data["w"][:n]
    d, m = data["digit"][:n], data["domain"][:n]
    sampler = DDIMSampler(NoiseSchedule(), steps=4, spacing="trailing", clip_x0=1.0)
    with torch.inference_mode():
        x0 = sampler.sample(lambda x, t: guided_eps(tiny_unet, x, t, d, m, w, "digit", True), x_T)
    assert torch.equal(x0, data["x"][:n, -1])


def test_resume_is_bit_identical(tmp_path, distilled, tiny_unet):
    cfg, _ = distilled
    data = load_trajectories(f"{cfg.out_dir}/trajectories", [999, 499])
    straight = StudentTrainer(cfg, tiny_unet, NoiseSchedule(), data)
    straight.fit(progress=False)
    cfg2 = DistillConfig(**{**cfg.__dict__, "out_dir": str(tmp_path / "again")})
    first = StudentTrainer(cfg2, tiny_unet, NoiseSchedule(), data)
    first.train_step()
    first.train_step()
    first.save()  # "killed" after step 2
    second = StudentTrainer(cfg2, tiny_unet, NoiseSchedule(), data)
    second.resume()
    assert second.step == 2
    second.fit(progress=False)
    for a, b in zip(straight.ema.state_dict().values(), second.ema.state_dict().values()):
        assert torch.equal(a, b)
    bad = DistillConfig(**{**cfg2.__dict__, "lr": 1e-3})
    with pytest.raises(DifflabError, match="--lr: the run has 0.0001, this resume asks for 0.001"):
        StudentTrainer(bad, tiny_unet, NoiseSchedule(), data).resume()


def _one_saved_step(tmp_path, distilled, tiny_unet):
    """(config, trajectories, trainer) of a run in tmp_path/run that saved its checkpoint after one update."""
    cfg, _ = distilled
    data = load_trajectories(f"{cfg.out_dir}/trajectories", [999, 499])
    cfg2 = DistillConfig(**{**cfg.__dict__, "out_dir": str(tmp_path / "run")})
    first = StudentTrainer(cfg2, tiny_unet, NoiseSchedule(), data)
    first.train_step()
    first.save()
    return cfg2, data, first


@pytest.mark.parametrize("field, value", [("ema_decay", 0.99), ("warmup_steps", 7), ("guide", "both"),
                                          ("teacher", "other.safetensors"), ("trajectories", 999),
                                          ("min_lr_ratio", 0.5), ("bf16", False)])
def test_a_resume_refuses_every_setting_that_shapes_the_curve(tmp_path, distilled, tiny_unet, field, value):
    """Not only the few fields it once listed: any setting outside DISTILL_RESUME_MAY_CHANGE that differs
    from the run's is named (flag, the run's value, the asked one), before any state is loaded."""
    cfg2, data, first = _one_saved_step(tmp_path, distilled, tiny_unet)
    flag = "--" + field.replace("_", "-")
    changed = StudentTrainer(DistillConfig(**{**cfg2.__dict__, field: value}), tiny_unet, NoiseSchedule(), data)
    with pytest.raises(DifflabError, match=f"{flag}: the run has {getattr(cfg2, field)!r}, this resume asks for "
                                           f"{value!r}"):
        changed.resume()
    assert changed.step == 0  # nothing was restored


def test_a_refused_rerun_adds_no_trajectories(distilled):
    """Re-running `digits distill` into a finished run's folder with more --trajectories is refused before
    the teacher makes any: the folder's files are byte-identical afterwards."""
    cfg, _ = distilled
    before = {p: p.read_bytes() for p in sorted(Path(cfg.out_dir).rglob("*")) if p.is_file()}
    more = DistillConfig(**{**cfg.__dict__, "trajectories": cfg.trajectories + cfg.traj_batch})
    with pytest.raises(DifflabError, match=f"--trajectories: the run has {cfg.trajectories}"):
        distill(more, progress=False, log=lambda s: None)
    assert {p: p.read_bytes() for p in sorted(Path(cfg.out_dir).rglob("*")) if p.is_file()} == before


def test_a_resume_may_change_where_and_how_long(tmp_path, distilled, tiny_unet):
    """--steps (extending a run), --log-every, --ckpt-every, --traj-batch and --device may differ; a record
    written before a field existed (here: the rollout and final-image fields) counts as what it meant."""
    cfg2, data, first = _one_saved_step(tmp_path, distilled, tiny_unet)
    tensors, meta = load_checkpoint(first.ckpt_path)
    for old_field in ("rollout", "rollout_jumps", "final_weight", "final_batch"):
        del meta["distill"][old_field]
    save_checkpoint(first.ckpt_path, tensors, meta)
    more = {"steps": cfg2.steps + 5, "log_every": 3, "ckpt_every": 9, "traj_batch": 7, "device": "cpu"}
    again = StudentTrainer(DistillConfig(**{**cfg2.__dict__, **more}), tiny_unet, NoiseSchedule(), data)
    again.resume()
    assert again.step == 1


def test_a_second_run_into_a_folder_in_use_is_refused(distilled):
    # in place and resumable, but locked: two runs into one folder would overwrite each other's checkpoints
    cfg, result = distilled
    before = result.student_path.read_bytes()
    with inplace_output_dir(cfg.out_dir, resume=True):  # stands for a first run still writing the folder
        with pytest.raises(DifflabError, match="another difflab run"):
            distill(cfg, progress=False, log=lambda s: None)
    assert result.student_path.read_bytes() == before
    lines = []
    distill(cfg, progress=False, log=lines.append)  # released: re-running continues where the run stopped
    assert lines == [f"resumed from {cfg.out_dir}/checkpoint.safetensors at step {cfg.steps}"]


def test_distill_config_validation():
    with pytest.raises(DifflabError, match="multiple"):
        DistillConfig(student_steps=3, teacher_steps=20)
    with pytest.raises(DifflabError, match="finite"):
        DistillConfig(lr=float("nan"))
    with pytest.raises(DifflabError, match="guidance-min"):
        DistillConfig(guidance_min=6.0)
    with pytest.raises(DifflabError, match="rollout"):
        DistillConfig(rollout=1.5)
    with pytest.raises(DifflabError, match="final-weight"):
        DistillConfig(final_weight=-0.5)
    with pytest.raises(DifflabError, match="final-batch"):
        DistillConfig(final_batch=0)


def test_loss_is_zero_at_the_exact_targets_in_both_output_forms(distilled, tiny_unet):
    """At the x0 step the exact x0 target, elsewhere the exact eps target, give zero loss; the sampler,
    fed through student_output_to_eps, then lands on the teacher's states."""
    from difflab.training.jumps import jump_coefficients, student_output_to_eps, x0_output_steps

    cfg, _ = distilled
    schedule = NoiseSchedule()
    grid = student_timesteps(schedule, cfg.student_steps)
    data = load_trajectories(f"{cfg.out_dir}/trajectories", grid)
    trainer = StudentTrainer(cfg, tiny_unet, schedule, data)
    c = jump_coefficients(schedule, grid).float()
    assert x0_output_steps(grid) == [999]
    sampler = student_sampler(schedule, cfg.student_steps)
    for k, t in enumerate(grid):
        x_t, x_next = data["x"][:, k], data["x"][:, k + 1]
        if t in trainer.x0_steps:
            out = (x_next - c[k, 2] * x_t) / c[k, 3]  # exact x0
        else:
            out = (x_next - c[k, 0] * x_t) / c[k, 1]  # exact eps
        kk = torch.full((len(x_t),), k)
        assert trainer.loss(out, x_t, x_next, kk).item() < 1e-8
        assert trainer.loss(out + 0.1, x_t, x_next, kk).item() > 1e-4
        eps = student_output_to_eps(out, x_t, t, schedule, trainer.x0_steps)
        assert torch.allclose(sampler.step(eps, t, x_t).prev_sample, x_next, atol=3e-5)


def test_balanced_weighting_gives_each_jump_an_equal_share(distilled, tiny_unet):
    """First batch: each row's loss over its own jump's batch mean averages to exactly 1, whatever the
    jumps' magnitudes; the running means then follow each jump separately and survive a resume."""
    cfg, _ = distilled
    cfg = DistillConfig(**{**cfg.__dict__, "jump_weighting": "balanced"})
    schedule = NoiseSchedule()
    grid = student_timesteps(schedule, cfg.student_steps)
    data = load_trajectories(f"{cfg.out_dir}/trajectories", grid)
    trainer = StudentTrainer(cfg, tiny_unet, schedule, data)
    per_row = torch.tensor([1.0, 3.0, 100.0, 300.0])
    k = torch.tensor([0, 0, 1, 1])
    assert trainer.balanced(per_row, k).item() == pytest.approx(1.0)
    assert trainer.jump_scale.tolist() == [2.0, 200.0]
    # second batch: jump 0 alone; jump 1's running mean is untouched, jump 0's moves 2 % of the way
    trainer.balanced(torch.tensor([4.0, 4.0]), torch.tensor([0, 0]))
    assert trainer.jump_scale.tolist() == pytest.approx([2.04, 200.0])
    # resume restores the running means (bit-identical continuation needs them)
    trainer.save()
    again = StudentTrainer(cfg, tiny_unet, schedule, data)
    again.resume()
    assert torch.equal(again.jump_scale, trainer.jump_scale)
    with pytest.raises(DifflabError, match="--jump-weighting: the run has 'balanced'"):
        StudentTrainer(DistillConfig(**{**cfg.__dict__, "jump_weighting": "x0"}), tiny_unet, schedule,
                       data).resume()
    with pytest.raises(DifflabError, match="jump-weighting"):
        DistillConfig(jump_weighting="equal")


def test_init_starts_a_new_leg_from_a_checkpoints_ema(tmp_path, distilled, tiny_unet):
    """--init copies the EMA weights of a distillation checkpoint (or a student file) into model and EMA,
    with a fresh step count; a teacher file is refused."""
    cfg, result = distilled
    schedule = NoiseSchedule()
    grid = student_timesteps(schedule, cfg.student_steps)
    data = load_trajectories(f"{cfg.out_dir}/trajectories", grid)
    student, _, _ = load_digit_model(result.student_path)
    for init in (f"{cfg.out_dir}/checkpoint.safetensors", str(result.student_path)):
        leg = StudentTrainer(DistillConfig(**{**cfg.__dict__, "out_dir": str(tmp_path / "leg"), "init": init}),
                             tiny_unet, schedule, data)
        assert leg.step == 0
        for name, p in student.state_dict().items():
            assert torch.equal(leg.model.state_dict()[name], p), name
            assert torch.equal(leg.ema.state_dict()[name], p), name
    with pytest.raises(DifflabError, match="teacher"):
        StudentTrainer(DistillConfig(**{**cfg.__dict__, "init": cfg.teacher}), tiny_unet, schedule, data)


def test_the_student_records_its_own_run(tmp_path, distilled, tiny_unet, monkeypatch):
    """`digits info` on a student: seconds (trajectories + updates) over all legs and the number of legs
    come from the file itself; a longer re-run adds a leg, a re-run with nothing left does not, a leg
    started with --init counts the legs it started from, and a run resumed from a checkpoint that predates
    the record writes none (its total is unknown) instead of a wrong one."""
    from difflab.digits.info import checkpoint_info
    from difflab.io import load_checkpoint, save_checkpoint

    cfg, result = distilled
    first = checkpoint_info(str(result.student_path))["train"]
    assert first["legs"] == 1 and first["wall_s"] > 0 and "source" not in first
    assert first["date"] and "cores" in first["machine"]
    assert first["wall_s"] == pytest.approx(first["trajectories_s"] + first["student_s"], abs=0.11)
    _, ckpt_meta = load_checkpoint(f"{cfg.out_dir}/checkpoint.safetensors")
    run = ckpt_meta["train_run"]
    assert run["legs"] == 1 and run["wall_s"] == pytest.approx(run["trajectories_s"] + run["student_s"], abs=0.11)
    _, student_meta = load_checkpoint(result.student_path)
    assert student_meta["train_run"] == run  # finished at a checkpoint: the student repeats its record

    def slow_save(*args, **kwargs):  # a slow disk (as on CI): writing the checkpoint takes a while
        time.sleep(0.3)
        save_checkpoint(*args, **kwargs)

    monkeypatch.setattr("difflab.training.distill.save_checkpoint", slow_save)
    longer = DistillConfig(**{**cfg.__dict__, "steps": cfg.steps + 2})
    second_path = distill(longer, progress=False, log=lambda s: None).student_path
    second = checkpoint_info(str(second_path))["train"]
    assert (second["steps"], second["legs"]) == (cfg.steps + 2, 2) and second["wall_s"] >= first["wall_s"]
    # the seconds after the last checkpoint (its own writing) are in neither: a leg resumed from it would
    # otherwise record fewer seconds than the student file it extends
    assert load_checkpoint(second_path)[1]["train_run"] == load_checkpoint(
        f"{cfg.out_dir}/checkpoint.safetensors")[1]["train_run"]
    monkeypatch.undo()
    again = checkpoint_info(str(distill(longer, progress=False, log=lambda s: None).student_path))["train"]
    assert again["legs"] == 2  # nothing left to train: not a leg

    schedule = NoiseSchedule()
    data = load_trajectories(f"{cfg.out_dir}/trajectories", student_timesteps(schedule, cfg.student_steps))
    leg = StudentTrainer(DistillConfig(**{**cfg.__dict__, "out_dir": str(tmp_path / "leg"),
                                          "init": str(result.student_path)}), tiny_unet, schedule, data)
    leg.fit(progress=False)
    assert leg.train_run()["legs"] == 3
    assert leg.step == cfg.steps and leg.train_run()["steps"] == (cfg.steps + 2) + cfg.steps  # all legs' updates

    tensors, meta = load_checkpoint(f"{cfg.out_dir}/checkpoint.safetensors")
    del meta["train_run"]  # as written before runs were recorded
    save_checkpoint(f"{cfg.out_dir}/checkpoint.safetensors", tensors, meta)
    old = DistillConfig(**{**cfg.__dict__, "steps": cfg.steps + 4})
    _, student_meta = load_checkpoint(distill(old, progress=False, log=lambda s: None).student_path)
    assert "train_run" not in student_meta
    assert checkpoint_info(str(result.student_path))["train"]["legs"] is None


def test_rollout_rows_start_where_the_student_itself_would_stand(distilled, tiny_unet):
    """--rollout 1: every row at a later jump starts from the EMA student's own jump from the teacher's
    previous state of the same trajectory (as the sampler would take it), its target still the teacher's
    next state; rows at the first jump are untouched. A resume with another share is refused."""
    from difflab.training.jumps import student_output_to_eps

    cfg, _ = distilled
    cfg = DistillConfig(**{**cfg.__dict__, "rollout": 1.0, "batch_size": 32, "bf16": False})
    schedule = NoiseSchedule()
    grid = student_timesteps(schedule, cfg.student_steps)
    data = load_trajectories(f"{cfg.out_dir}/trajectories", grid)
    trainer = StudentTrainer(cfg, tiny_unet, schedule, data)
    with torch.no_grad():  # an EMA that differs from the teacher's weights, so the test sees which one ran
        for p in trainer.ema.parameters():
            p.add_(0.01 * torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())))
    x_t, x_next, k, t, digit, domain, w, own, x_prev, n = trainer.batch()
    assert torch.equal(own, k >= 1) and own.any() and (~own).any() and (n == 1).all()
    # x_prev is the same trajectory's teacher state one jump earlier
    for row, prev in zip(x_t[own], x_prev):
        j = ((data["x"][:, 1] - row).abs().amax(dim=(1, 2, 3)) == 0).nonzero().flatten()
        assert len(j) == 1 and torch.equal(data["x"][j[0], 0], prev)
    states = trainer.own_states(x_prev, k[own] - 1, n, digit[own], domain[own], w[own])
    sampler = student_sampler(schedule, cfg.student_steps)
    with torch.no_grad():
        out = trainer.ema(x_prev, torch.full((len(x_prev),), grid[0]), digit[own], domain[own], w[own])
    eps = student_output_to_eps(out, x_prev, grid[0], schedule, trainer.x0_steps)
    expected = sampler.step(eps, grid[0], x_prev).prev_sample
    assert torch.allclose(states, expected, atol=1e-4)
    assert (states - x_t[own]).abs().max() > 1e-3  # not the teacher's state
    trainer.train_step()  # the substitution runs inside a step
    trainer.save()
    with pytest.raises(DifflabError, match="rollout"):
        StudentTrainer(DistillConfig(**{**cfg.__dict__, "rollout": 0.5}), tiny_unet, schedule, data).resume()


def test_full_rollout_rows_start_on_the_students_sampling_path(tiny_unet):
    """--rollout-jumps 3 with 4 steps: a row at jump k starts where the student's own sampler stands after
    k steps from the trajectory's noise x_T (the state sampling really feeds it), for every k."""
    from difflab.training.jumps import student_output_to_eps

    cfg = DistillConfig(student_steps=4, teacher_steps=4, batch_size=64, rollout=1.0, rollout_jumps=3,
                        bf16=False)
    schedule = NoiseSchedule()
    g = torch.Generator().manual_seed(0)
    data = {"x": torch.randn(8, 5, 3, 28, 28, generator=g), "digit": torch.randint(10, (8,), generator=g),
            "domain": torch.randint(2, (8,), generator=g), "w": 1 + 4 * torch.rand(8, generator=g)}
    trainer = StudentTrainer(cfg, tiny_unet, schedule, data)
    with torch.no_grad():
        for p in trainer.ema.parameters():
            p.add_(0.01 * torch.randn(p.shape, generator=g))
    x_t, x_next, k, t, digit, domain, w, own, x_from, n = trainer.batch()
    assert torch.equal(n, k[own]) and set(k[own].tolist()) == {1, 2, 3}
    states = trainer.own_states(x_from, k[own] - n, n, digit[own], domain[own], w[own])
    sampler = student_sampler(schedule, 4)
    for r in range(len(states)):  # each starts from its trajectory's noise
        j = (data["x"][:, 0] - x_from[r]).abs().amax(dim=(1, 2, 3)).argmin()
        assert torch.equal(data["x"][j, 0], x_from[r])
    d, m, ww = digit[own], domain[own], w[own]
    path = []
    with torch.no_grad():
        sampler.sample(lambda x, tt: student_output_to_eps(
            trainer.ema(x, torch.full((len(x),), tt), d, m, ww), x, tt, schedule, trainer.x0_steps),
            x_from, None, lambda o: path.append(o.prev_sample))
    expected = torch.stack([path[int(n[r]) - 1][r] for r in range(len(states))])
    assert torch.allclose(states, expected, atol=1e-4)


def test_final_image_term_is_the_students_own_sample_against_the_teachers_x0(tmp_path, tiny_unet):
    """--final-weight: the term is the MSE between what the student's sampler makes from the trajectory's
    noise (all K steps, the training weights) and the teacher's x_0, its gradient reaches the weights
    through every jump, its draw comes after the jump batch's (a run without it makes no extra draw),
    and a resume with another weight is refused."""
    from difflab.training.jumps import student_output_to_eps

    cfg = DistillConfig(out_dir=str(tmp_path / "run"), student_steps=4, teacher_steps=4, batch_size=8,
                        final_weight=2.0, final_batch=5, bf16=False)
    schedule = NoiseSchedule()
    g = torch.Generator().manual_seed(0)
    data = {"x": torch.randn(8, 5, 3, 28, 28, generator=g), "digit": torch.randint(10, (8,), generator=g),
            "domain": torch.randint(2, (8,), generator=g), "w": 1 + 4 * torch.rand(8, generator=g)}
    trainer = StudentTrainer(cfg, tiny_unet, schedule, data)
    with torch.no_grad():  # weights away from the teacher's, so the test sees which network ran
        for p in trainer.model.parameters():
            p.add_(0.01 * torch.randn(p.shape, generator=g))
    plain = StudentTrainer(DistillConfig(**{**cfg.__dict__, "final_weight": 0.0}), tiny_unet, schedule, data)
    for a, b in zip(trainer.batch(), plain.batch()):  # the term's draw comes after the jump batch's
        assert torch.equal(a, b)
    x_T, x_0, digit, domain, w = trainer.final_rows()
    assert x_T.shape == (5, 3, 28, 28)
    for r in range(5):  # noise and x_0 of one trajectory
        j = (data["x"][:, 0] - x_T[r]).abs().amax(dim=(1, 2, 3)).argmin()
        assert torch.equal(data["x"][j, -1], x_0[r]) and digit[r] == data["digit"][j] and w[r] == data["w"][j]
    term = trainer.final_loss(x_T, x_0, digit, domain, w)
    sampler = student_sampler(schedule, 4)  # the reference: the sampler's own path, differentiated by autograd
    sample = sampler.sample(lambda x, tt: student_output_to_eps(
        trainer.model(x, torch.full((len(x),), tt), digit, domain, w), x, tt, schedule, trainer.x0_steps),
        x_T, None)
    reference = ((sample - x_0) ** 2).mean()
    assert torch.allclose(term, reference, rtol=1e-4)
    params = [p for p in trainer.model.parameters() if p.requires_grad]
    grads = torch.autograd.grad(term, params, allow_unused=True)
    expected = torch.autograd.grad(reference, params, allow_unused=True)
    for gr, ex in zip(grads, expected):  # a jump cut from the graph anywhere would change these
        assert (gr is None) == (ex is None) and (gr is None or (gr - ex).norm() <= 1e-3 * ex.norm() + 1e-9)
    assert any(gr is not None and gr.abs().max() > 0 for gr in grads)
    w_row = next(i for i, p in enumerate(params) if p is trainer.model.guidance_mlp[0].weight)
    assert grads[w_row].abs().max() > 0  # w enters the network
    before = trainer.gen.get_state()
    trainer.train_step()
    assert trainer.last_final is not None and trainer.last_final > 0
    assert not torch.equal(before, trainer.gen.get_state())
    before = plain.gen.get_state()
    plain.train_step()
    assert plain.last_final is None
    after = plain.gen.get_state()
    plain.gen.set_state(before)
    plain.batch()
    assert torch.equal(plain.gen.get_state(), after)  # without the term: the jump batch's draws only
    trainer.save()
    with pytest.raises(DifflabError, match="--final-weight"):
        StudentTrainer(DistillConfig(**{**cfg.__dict__, "final_weight": 1.0}), tiny_unet, schedule, data).resume()
