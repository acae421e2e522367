"""Distil the guided digit teacher into a few-step, guidance-conditioned student.

Two ideas in one training run (both from the literature, combined because each halves the cost):
- guided distillation (Meng et al. 2023, arXiv 2210.03142): the student takes the CFG scale w as an
  input, so ONE forward pass replaces the teacher's two (conditional + unconditional);
- step distillation on the teacher's own ODE trajectories: the student makes in one DDIM step the jump
  the teacher makes in `teacher_steps // student_steps` DDIM steps (progressive distillation's target,
  Salimans & Ho 2022, arXiv 2202.00512, taken over several teacher steps at once as in TRACT,
  arXiv 2303.04248, rather than halving in rounds: one run, one curve).

Phase 1 (`make_trajectories`, training/trajectories.py) runs the teacher (DDIM, trailing spacing, CFG
at a random w per sample) from pure noise and keeps x at the student's grid points: (N, K+1, 3, 28, 28),
x_T first, x_0 last. Chunks are written one file at a time, so the phase resumes where it stopped.
Phase 2 (`StudentTrainer`) trains the student so that its DDIM step from x_{t_k} lands on the teacher's
x_{t_{k+1}} (DDIM eq. 12 is linear in the network output, so the exact target is unique). Two choices,
both measured on the first run (docs/RESULTS.md):
- the loss is the error of x_{t_{k+1}} / sqrt(alpha_bar_{t_{k+1}}) (the DDIM ODE's own variable, close to
  the x0 error a step causes), not eps-space MSE: with eps-MSE the first jump (t = 999 -> 749) reached
  eps-MSE 3e-4 while its x_749 was all error (that error scaled to x0: 6.4, vs 0.003 at the last jump);
- at the first step (t = T-1) the output means x0, not eps (`jumps.x0_output_steps`): there
  x0 = (x_t - sqrt(1 - a) eps) / sqrt(a) divides by 0.006, beyond a bf16 network's precision.
Resume is bit-identical (generator state saved).

Devices (`--device`, difflab.device): teacher and student run on the device; every random draw (labels,
w, x_T, batches) comes from a CPU generator and is moved, and trajectories are stored on the CPU.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from tqdm import tqdm

from difflab.device import autocast, cpu_generator, grad_scaler, resolve_device, scaled_step
from difflab.diffusion.schedule import NoiseSchedule
from difflab.errors import DifflabError
from difflab.io import inplace_output_dir, load_checkpoint, save_checkpoint
from difflab.models.digits import SHIPPED_TEACHER, load_digit_model, save_digit_model
from difflab.models.state import load_state_strict
from difflab.models.unet import ConditionalUNet
from difflab.training.common import flatten_optimizer, lr_at, run_record, unflatten_optimizer, update_ema
from difflab.training.config import (  # the settings; DistillConfig is imported from here too
    DEFAULT_IF_ABSENT,
    DISTILL_RESUME_MAY_CHANGE,
    DistillConfig,
    resume_conflict,
)
from difflab.training.jumps import jump_coefficients, x0_output_steps
from difflab.training.trajectories import load_trajectories, make_trajectories, student_timesteps

DISTILL_KIND = "difflab-digits-distill"
JUMP_SCALE_DECAY = 0.98  # running mean of each jump's loss ("balanced"): ~50 steps of memory


def make_student(teacher: ConditionalUNet) -> ConditionalUNet:
    """A guidance-input copy of the teacher: same weights, plus a zero-initialised w embedding."""
    cfg = type(teacher.config).from_dict({**teacher.config.to_dict(), "guidance_input": True})
    student = ConditionalUNet(cfg, getattr(teacher, "alphas_cumprod", None))  # a v teacher's schedule
    missing, unexpected = student.load_state_dict(teacher.state_dict(), strict=False)
    if unexpected or any(not k.startswith("guidance_mlp.") for k in missing):
        raise DifflabError("distill: teacher weights do not fit the student")
    return student


def earlier_run(meta: dict) -> dict | None:
    """The seconds, legs and student updates recorded in a distillation checkpoint's or student's metadata;
    None when it predates the record (then this run's total is unknown and is not written). Updates are
    None in records made before they were counted."""
    run = meta.get("train_run")
    if run is None:
        return None
    return {**{key: run[key] for key in ("trajectories_s", "student_s", "legs")}, "steps": run.get("steps")}


def check_resume(path, meta: dict, cfg: DistillConfig) -> None:
    """Refuse to resume the distillation checkpoint at `path` (its metadata `meta`) with `cfg` unless it is a
    distillation checkpoint and every setting that shapes the curve repeats the run's (another recipe is
    another run; DISTILL_RESUME_MAY_CHANGE may differ)."""
    if meta.get("kind") != DISTILL_KIND:
        raise DifflabError(f"{path}: not a distillation checkpoint")
    if conflict := resume_conflict(meta.get("distill", {}), cfg, DISTILL_RESUME_MAY_CHANGE, skip=(),
                                   absent=DEFAULT_IF_ABSENT):
        raise DifflabError(f"{path}: {conflict}")


class StudentTrainer:
    """Phase 2: the student regresses the teacher's multi-step DDIM jumps (see module docstring)."""

    def __init__(self, cfg: DistillConfig, teacher: ConditionalUNet, schedule: NoiseSchedule, data: dict):
        self.cfg, self.schedule, self.data = cfg, schedule, data
        self.grid = student_timesteps(schedule, cfg.student_steps)
        self.coef = jump_coefficients(schedule, self.grid)
        self.grid_t = torch.tensor(self.grid)
        self.x0_steps = x0_output_steps(self.grid, teacher.config.prediction)
        self.x0_jumps = torch.tensor([t in self.x0_steps for t in self.grid])  # (K,) bool: output means x0
        self.device = resolve_device(cfg.device)
        torch.manual_seed(cfg.seed)
        self.model = make_student(teacher).train().to(self.device)
        self.ema = make_student(teacher).eval().requires_grad_(False).to(self.device)
        self.ema.load_state_dict(self.model.state_dict())
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=cfg.lr, weight_decay=0.0)
        self.scaler = grad_scaler(self.device, cfg.bf16)  # active for fp16 autocast only
        self.gen = cpu_generator(cfg.seed * 1000 + 7)  # batches drawn on the CPU, then moved
        self.step = 0
        self.last_final: float | None = None  # the final-image term of the last step (--final-weight)
        self.jump_scale = torch.zeros(len(self.grid))  # "balanced" weighting's running means (0: not seen yet)
        self.ckpt_path = Path(cfg.out_dir) / "checkpoint.safetensors"
        # the run's record (`difflab digits info`): seconds and legs of the runs before this one (None:
        # resumed from a checkpoint made before runs were recorded, so the total is unknown), this process's
        # phase-1 seconds (set by distill()) and the start of its phase 2 (set by fit())
        self.run_before: dict | None = {"trajectories_s": 0.0, "student_s": 0.0, "legs": 0, "steps": 0}
        self.trajectories_s, self.leg_start, self.leg_steps = 0.0, None, 0
        # (step, record) of the last checkpoint written: the student file made right after it repeats that
        # record, so a later leg resumed from the checkpoint never counts less than the student file said
        # (the checkpoint cannot include the seconds spent writing itself)
        self.saved_run: tuple[int, dict | None] | None = None
        if cfg.init is not None:
            self.load_init(cfg.init)

    def load_init(self, path) -> None:
        """Start model and EMA from a distillation checkpoint (its EMA for both: the better weights) or a
        student file: a new leg with fresh optimiser, schedule and step count."""
        tensors, meta = load_checkpoint(path)
        if meta.get("kind") == DISTILL_KIND:
            weights = {k[4:]: v for k, v in tensors.items() if k.startswith("ema.")}
        else:
            student, _, _ = load_digit_model(path)
            if not student.config.guidance_input:
                raise DifflabError(f"{path}: --init needs a student or a distillation checkpoint, not a teacher")
            weights = student.state_dict()
        load_state_strict(self.model, weights, path)
        load_state_strict(self.ema, weights, path)
        self.run_before = earlier_run(meta)  # its seconds and legs are part of this model's making


    def batch(self):
        """Random (trajectory, student step k) pairs -> x_t, x_next (B, 3, 28, 28), k, t, labels, w (B,),
        and for `rollout`: own (B,) bool, the rows that start from the student's own state, with the
        teacher's states x_from (R, 3, 28, 28) and the own jumps n (R,) that lead from there to jump k
        (none when rollout is 0, and no draw made for it then: runs without it are unchanged)."""
        x, K = self.data["x"], len(self.grid)
        i = torch.randint(len(x), (self.cfg.batch_size,), generator=self.gen)
        k = torch.randint(K, (self.cfg.batch_size,), generator=self.gen)
        t = self.grid_t[k]
        own = torch.zeros(len(k), dtype=torch.bool)
        if self.cfg.rollout > 0:
            own = (k >= 1) & (torch.rand(len(k), generator=self.gen) < self.cfg.rollout)
        n = k[own].clamp(max=self.cfg.rollout_jumps)
        return (x[i, k], x[i, k + 1], k, t, self.data["digit"][i], self.data["domain"][i], self.data["w"][i],
                own, x[i[own], k[own] - n], n)

    def final_rows(self):
        """`final_batch` random trajectories for the final-image term: their noise x_T and the teacher's x_0
        (F, 3, 28, 28), digit, domain, w (F,). Drawn after batch()'s draws and only when the term is on."""
        f = torch.randint(len(self.data["x"]), (self.cfg.final_batch,), generator=self.gen)
        return (self.data["x"][f, 0], self.data["x"][f, -1], self.data["digit"][f], self.data["domain"][f],
                self.data["w"][f])

    def final_loss(self, x_T, x_0, digit, domain, w) -> torch.Tensor:
        """Mean squared error of the student's x_0 after its K jumps from x_T (F, 3, 28, 28), gradients
        through every jump (the training weights), against the teacher's x_0."""
        start, K = torch.zeros(len(x_T), dtype=torch.long, device=x_T.device), len(self.grid)
        return ((self.walk(self.model, x_T, start, start + K, digit, domain, w) - x_0) ** 2).mean()

    @torch.no_grad()
    def own_states(self, x_from, k_from, n, digit, domain, w) -> torch.Tensor:
        """Where the EMA student itself stands after n (R,) of its own jumps from the states x_from
        (R, 3, 28, 28) at jumps k_from (R,)."""
        return self.walk(self.ema, x_from, k_from, n, digit, domain, w)

    def walk(self, net, x, k, n, digit, domain, w) -> torch.Tensor:
        """`net`'s own DDIM path (bf16 as it samples): n (R,) jumps from the states x (R, 3, 28, 28) at
        jumps k (R,); its state at jump k + n. Out of place, so autograd follows it when gradients are on."""
        for j in range(int(n.max()) if len(n) else 0):
            go = n > j
            with autocast(x.device, enabled=self.cfg.bf16):
                out = net(x[go], self.grid_t.to(x.device)[k[go]], digit[go], domain[go], w[go]).float()
            x = x.index_put((go,), self.jump(out, x[go], k[go]))
            k = k + go.long()
        return x

    def jump(self, out: torch.Tensor, x_t: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        """The student's DDIM step (B, 3, 28, 28) from x_t at jumps k (B,) given its outputs `out` (eps, or
        x0 at the x0 steps): DDIM eq. 12 in the form the output takes."""
        c_x, c_eps, d_x, d_x0, _ = self.coef.to(x_t.device)[k].float().view(-1, 5, 1, 1, 1).unbind(1)
        is_x0 = self.x0_jumps.to(k.device)[k]
        return torch.where(is_x0.view(-1, 1, 1, 1), d_x * x_t + d_x0 * out, c_x * x_t + c_eps * out)

    def loss(self, out: torch.Tensor, x_t, x_next, k) -> torch.Tensor:
        """Error of the student's DDIM step against the teacher's x_next, measured as x_next / sqrt(a_next)
        (the DDIM ODE's own variable; ~ the x0 error it causes): eps-space MSE would weight the first jump
        ~20000x too little (its eps is scaled by 8 into x_749, whose signal is only 0.06 of it)."""
        a_next = self.coef.to(x_t.device)[k, 4].float().view(-1, 1, 1, 1)
        per_row = (((self.jump(out, x_t, k) - x_next) ** 2) / a_next).mean(dim=(1, 2, 3))
        if self.cfg.jump_weighting == "x0":
            return per_row.mean()
        return self.balanced(per_row, k)

    def balanced(self, per_row: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        """Mean of per_row (B,) / the running mean loss of its jump k (B,): every jump weighs the same.
        The running means (K,) start at each jump's first batch value and are part of the checkpoint."""
        K = len(self.grid)
        sums = torch.zeros(K, device=per_row.device).index_add(0, k, per_row.detach())
        counts = torch.bincount(k, minlength=K).to(per_row.device)
        seen = counts > 0
        batch_mean = sums / counts.clamp(min=1)
        scale = self.jump_scale.to(per_row.device)
        fresh = seen & (scale == 0)
        scale = torch.where(fresh, batch_mean, scale)
        scale = torch.where(seen & ~fresh, JUMP_SCALE_DECAY * scale + (1 - JUMP_SCALE_DECAY) * batch_mean, scale)
        self.jump_scale = scale.cpu()
        return (per_row / scale[k].clamp(min=1e-12)).mean()

    def train_step(self) -> float:
        x_t, x_next, k, t, digit, domain, w, own, x_from, n = (v.to(self.device) for v in self.batch())
        if own.any():
            x_t = x_t.clone()
            x_t[own] = self.own_states(x_from, k[own] - n, n, digit[own], domain[own], w[own])
        for group in self.opt.param_groups:
            group["lr"] = lr_at(self.step, self.cfg)
        with autocast(self.device, enabled=self.cfg.bf16):
            pred = self.model(x_t, t, digit, domain, w)
        loss = self.loss(pred.float(), x_t, x_next, k)
        self.last_final = None
        if self.cfg.final_weight > 0:
            final = self.final_loss(*(v.to(self.device) for v in self.final_rows()))
            self.last_final = final.item()
            loss = loss + self.cfg.final_weight * final
        if not torch.isfinite(loss):
            raise DifflabError(f"distill: non-finite loss at step {self.step}; nothing saved")
        scaled_step(loss, self.opt, self.scaler, self.model.parameters(), self.cfg.grad_clip)
        update_ema(self.ema, self.model, self.step, self.cfg.ema_decay)
        self.step += 1
        self.leg_steps += 1
        return loss.item()

    def train_run(self) -> dict | None:
        """Training seconds over all legs (teacher trajectories + student updates), legs (processes that
        trained the student; 1 = one uninterrupted curve), student updates over all legs, machine and date;
        None when an earlier leg was not recorded."""
        if self.run_before is None:
            return None
        before = self.run_before
        student_s = before["student_s"] + (time.time() - self.leg_start if self.leg_start is not None else 0.0)
        trajectories_s = before["trajectories_s"] + self.trajectories_s
        legs = before["legs"] + (1 if self.leg_steps or not before["legs"] else 0)  # a re-run with nothing left: 0
        run = {**run_record(trajectories_s + student_s, legs, device=self.device),
               "trajectories_s": round(trajectories_s, 1), "student_s": round(student_s, 1)}
        if before.get("steps") is not None:  # updates over all legs (a leg started with --init counts from 0)
            run["steps"] = before["steps"] + self.leg_steps
        return run

    def final_run(self) -> dict | None:
        """The record for the student file: the last checkpoint's when no update came after it, so the
        checkpoint a longer re-run resumes from and the student file agree; else the record up to now."""
        if self.saved_run is not None and self.saved_run[0] == self.step:
            return self.saved_run[1]
        return self.train_run()

    def save(self) -> None:
        tensors = {f"model.{k}": v for k, v in self.model.state_dict().items()}
        tensors.update({f"ema.{k}": v for k, v in self.ema.state_dict().items()})
        opt, groups = flatten_optimizer(self.opt)
        tensors.update(opt)
        tensors["rng"] = self.gen.get_state()
        tensors["jump_scale"] = self.jump_scale.clone()
        meta = {"kind": DISTILL_KIND, "step": self.step, "distill": asdict(self.cfg), "param_groups": groups}
        run = self.train_run()
        if run is not None:
            meta["train_run"] = run
        self.saved_run = (self.step, run)
        if self.scaler.is_enabled():  # fp16 on CUDA: the loss scale is part of the state a resume needs
            meta["grad_scaler"] = self.scaler.state_dict()
        save_checkpoint(self.ckpt_path, tensors, meta)

    def resume(self, saved: tuple[dict, dict] | None = None) -> None:
        """Continue from OUT/checkpoint.safetensors; `saved`: its (tensors, meta) when the caller read it already."""
        tensors, meta = saved or load_checkpoint(self.ckpt_path)
        check_resume(self.ckpt_path, meta, self.cfg)
        load_state_strict(self.model, {k[6:]: v for k, v in tensors.items() if k.startswith("model.")},
                          self.ckpt_path)
        load_state_strict(self.ema, {k[4:]: v for k, v in tensors.items() if k.startswith("ema.")}, self.ckpt_path)
        self.opt.load_state_dict(unflatten_optimizer(tensors, meta["param_groups"]))
        if self.scaler.is_enabled() and "grad_scaler" in meta:
            self.scaler.load_state_dict(meta["grad_scaler"])
        self.gen.set_state(tensors["rng"])
        if "jump_scale" in tensors:
            self.jump_scale = tensors["jump_scale"].float()
        self.step = int(meta["step"])
        self.run_before = earlier_run(meta)

    def fit(self, progress: bool = True, log=None) -> None:
        bar = tqdm(total=self.cfg.steps, initial=self.step, desc="distil", disable=not progress,
                   dynamic_ncols=True)
        avg = final = None  # running means of the loss and of the final-image term (with --final-weight)
        self.leg_start = time.time()
        while self.step < self.cfg.steps:
            loss = self.train_step()
            avg = loss if avg is None else 0.95 * avg + 0.05 * loss
            if self.last_final is not None:
                final = self.last_final if final is None else 0.95 * final + 0.05 * self.last_final
            bar.update(1)
            if self.step % self.cfg.log_every == 0:
                shown = {"loss": f"{avg:.5f}", **({"final": f"{final:.5f}"} if final is not None else {})}
                bar.set_postfix(shown)
                if log is not None:
                    log(f"step {self.step} " + " ".join(f"{key} {value}" for key, value in shown.items()))
            if self.step % self.cfg.ckpt_every == 0 or self.step == self.cfg.steps:
                self.save()
        bar.close()


@dataclass
class DistillResult:
    student_path: Path
    wall_s: dict = field(default_factory=dict)


def distill(cfg: DistillConfig, progress: bool = True, log=print) -> DistillResult:
    """Both phases, resumable: re-running the same command continues where it stopped.

    Writes OUT/trajectories/, OUT/checkpoint.safetensors and OUT/student.safetensors (the EMA student as a
    digit model whose metadata names its sampler: steps, spacing, guidance range, teacher).
    """
    teacher, schedule, tmeta = load_digit_model(cfg.teacher)
    if teacher.config.guidance_input:
        raise DifflabError(f"{cfg.teacher}: is already a distilled student, not a teacher")
    ckpt = Path(cfg.out_dir) / "checkpoint.safetensors"
    saved = load_checkpoint(ckpt) if ckpt.exists() else None  # read once: checked here, restored below
    if saved is not None:  # a refused resume must not first add trajectories to the folder
        check_resume(ckpt, saved[1], cfg)
    # in place, never emptied: re-running continues from the trajectories and checkpoint there; locked so a
    # second run into the folder is refused instead of mixing its checkpoints with this one's
    with inplace_output_dir(cfg.out_dir, resume=True) as out:
        wall = {}
        t0 = time.time()
        folder = make_trajectories(cfg, teacher, schedule, progress)
        wall["trajectories_s"] = time.time() - t0
        grid = student_timesteps(schedule, cfg.student_steps)
        trainer = StudentTrainer(cfg, teacher, schedule, load_trajectories(folder, grid))
        trainer.trajectories_s = wall["trajectories_s"]
        if saved is not None:
            trainer.resume(saved)
            log(f"resumed from {trainer.ckpt_path} at step {trainer.step}")
        t1 = time.time()
        trainer.fit(progress, log)
        wall["student_s"] = time.time() - t1
        student = {"steps": cfg.student_steps, "spacing": "trailing", "guidance_range": [cfg.guidance_min,
                   cfg.guidance_max], "guide": cfg.guide, "teacher": str(cfg.teacher or SHIPPED_TEACHER),
                   "x0_steps": trainer.x0_steps,
                   "teacher_step": tmeta.get("step")}
        path = out / "student.safetensors"
        meta = {"student": student, "distill": asdict(cfg), "step": trainer.step}
        if (run := trainer.final_run()) is not None:
            meta["train_run"] = run
        save_digit_model(path, trainer.ema, schedule, meta)
    return DistillResult(path, wall)
