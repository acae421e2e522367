"""Train the conditional digit DDPM: epsilon-MSE, condition dropout for CFG, EMA, resume, DDP.

Devices (`--device`, difflab.device): the network, optimizer and EMA live on the device; batches are
drawn on the CPU (one CPU generator per rank) and moved, so the data a step sees does not depend on it.
Autocast: bf16 on the CPU, bf16 or fp16 on CUDA by what the card supports (fp16 with a GradScaler).

Data-parallel (docs/scaling.md): launch with
`torchrun --nnodes N --nproc_per_node M --rdzv-backend c10d --rdzv-endpoint HOST:PORT -m difflab.cli
digits train ...`. Each rank draws its own batch_size / (N M) images with its own generator (seed, rank);
DDP averages the gradients over NCCL on CUDA (process LOCAL_RANK takes cuda:LOCAL_RANK) or gloo on the CPU.
Rank 0 alone reads and writes the run folder: it holds the lock, writes checkpoints, and on --resume
reads the checkpoint and broadcasts it, so other nodes need no copy of the folder.
Every random draw goes through one torch.Generator per rank whose state is checkpointed, so a resumed
run ends with the same weights as an uninterrupted one.
"""

from __future__ import annotations

import contextlib
import copy
import math
import os
import shutil
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from tqdm import tqdm

from difflab.checks import flag_name
from difflab.data import DOMAINS, load_domain
from difflab.device import (
    autocast,
    cpu_generator,
    dist_env,
    distributed_backend,
    grad_scaler,
    rank_device,
    scaled_step,
)
from difflab.diffusion.schedule import NoiseSchedule
from difflab.errors import DifflabError
from difflab.io import inplace_output_dir, load_checkpoint, save_checkpoint
from difflab.models.digits import TRAIN_KIND, save_digit_model
from difflab.models.state import load_state_strict
from difflab.models.unet import ConditionalUNet
from difflab.training.common import (
    domain_weightings,
    draw_timesteps,
    drop_conditions,
    flatten_optimizer,
    lr_at,
    run_record,
    unflatten_optimizer,
    update_ema,
)
from difflab.training.config import (
    BUDGET_CALIBRATION_STEPS,
    BUDGET_REFIT_STEPS,
    RUN_FILES,
    TrainConfig,
    extra_ema_dir,
    extra_ema_path,
    first_difference,
    resume_conflict,
    snapshot_dir,
    snapshot_path,
)


def load_training_data(cfg: TrainConfig) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Both domains: images (N, 3, 28, 28) uint8, digits (N,), domains (N,) long."""
    imgs, digits, domains = [], [], []
    for i, dom in enumerate(DOMAINS):
        ds = load_domain(dom, "train", root=cfg.data_root, size=cfg.train_size, seed=cfg.seed)
        imgs.append(torch.from_numpy(ds.images).permute(0, 3, 1, 2).contiguous())
        digits.append(torch.from_numpy(ds.labels))
        domains.append(torch.full((len(ds),), i, dtype=torch.long))
    return torch.cat(imgs), torch.cat(digits), torch.cat(domains)


class Trainer:
    """One rank's training state: model, EMA and optimizer on `self.device`, a CPU generator for batches.

    Under torchrun (WORLD_SIZE > 1) it joins the process group with the backend of its device (NCCL for
    CUDA, gloo for the CPU) unless the caller already did, and wraps the model in DDP.
    """

    def __init__(self, cfg: TrainConfig, data=None):
        self.cfg = cfg
        self.rank, self.world, self.local_rank, local_world = dist_env()
        # one process per GPU under torchrun (cuda:LOCAL_RANK); alone, the device the flag names
        self.device = rank_device(cfg.device, self.local_rank, local_world)
        self.owns_group = False
        if self.world > 1 and not dist.is_initialized():
            if self.device.type == "cuda":
                torch.cuda.set_device(self.device)  # NCCL's collectives use the current device
            dist.init_process_group(distributed_backend(self.device))
            self.owns_group = True
        # our own collectives (divergence flag, RNG states, replica check) need tensors NCCL can send
        self.comm = self.device if self.world > 1 and dist.get_backend() == "nccl" else torch.device("cpu")
        if cfg.batch_size % self.world:
            raise DifflabError(f"batch size {cfg.batch_size} is not divisible by {self.world} processes")
        torch.manual_seed(cfg.seed)  # identical initial weights on every rank (built on the CPU, then moved)
        self.schedule = NoiseSchedule(cfg.schedule, cfg.num_train_timesteps)
        a_bar = self.schedule.alphas_cumprod  # a v-prediction network returns eps through it
        self.model = ConditionalUNet(cfg.unet, a_bar)
        self.ema = ConditionalUNet(cfg.unet, a_bar).eval().requires_grad_(False)
        self.ema.load_state_dict(self.model.state_dict())
        self.model.to(self.device)
        self.ema.to(self.device)
        self.extra_emas = [copy.deepcopy(self.ema) for _ in cfg.extra_ema_decays]
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.scaler = grad_scaler(self.device, cfg.bf16)  # active for fp16 autocast only
        self.net = self.model
        if self.world > 1:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.net = torch.nn.parallel.DistributedDataParallel(self.model, device_ids=ids)
        self.gen = cpu_generator(cfg.seed * 1000 + self.rank)
        self.step = 0
        self.total_steps = cfg.steps  # with --time-budget: fitted to the budget after the calibration steps
        kinds = domain_weightings(cfg.loss_weighting, DOMAINS)  # built once here, not per step
        self.min_snr_by_domain = torch.tensor([k == "min-snr" for k in kinds])  # per label; else weight 1 (MSE)
        self.clock = time.time  # wall clock of the budget and the run record (a test can drive it)
        self.leg_start, self.wall_before, self.legs = self.clock(), 0.0, 1  # resume() adds earlier legs
        self.saved_run: dict | None = None  # the run record of the last checkpoint written
        self.snapshot_done = 0.0  # minutes of the last --snapshot-minutes file this process wrote
        self.images, self.digits, self.domains = data if data is not None else load_training_data(cfg)
        self.ckpt_path = Path(cfg.out_dir) / "checkpoint.safetensors"

    # -- one optimisation step -------------------------------------------------------------------------
    def train_step(self) -> float:
        """Draw this rank's batch_size / world images on the CPU, move them, take one optimizer step."""
        cfg, g, dev = self.cfg, self.gen, self.device
        B = cfg.batch_size // self.world
        idx = torch.randint(len(self.images), (B,), generator=g)
        x0 = self.images[idx].to(dev).float().div(127.5).sub(1.0)  # uint8 over the bus: 4x less to copy
        image_domains = self.domains[idx].to(dev)  # the images' own domains: the loss weighting's, not dropped
        digits, domains = drop_conditions(self.digits[idx], self.domains[idx], g, cfg)
        t = draw_timesteps(self.schedule.alphas_cumprod, B, g, cfg.timestep_sampling, cfg.log_snr_mean,
                           cfg.log_snr_std, cfg.log_snr_share)
        noise = torch.randn(x0.shape, generator=g)
        digits, domains, t, noise = digits.to(dev), domains.to(dev), t.to(dev), noise.to(dev)
        x_t = self.schedule.q_sample(x0, t, noise)
        for group in self.opt.param_groups:
            group["lr"] = lr_at(self.step, cfg, self.total_steps)
        with autocast(dev, cfg.bf16):
            pred = self.net(x_t, t, digits, domains)
        loss = self._loss(pred.float(), noise, t, image_domains)
        self._stop_if_diverged(loss.item())
        scaled_step(loss, self.opt, self.scaler, self.model.parameters(), cfg.grad_clip)
        self._update_ema()
        self.step += 1
        return loss.item()

    def _loss(self, pred: torch.Tensor, noise: torch.Tensor, t: torch.Tensor,
              domains: torch.Tensor | None = None) -> torch.Tensor:
        """Epsilon MSE (B, 3, 28, 28) -> scalar: DDPM's L_simple (Ho et al. 2020, eq. 14), or per-sample
        Min-SNR-gamma weights min(SNR_t, gamma) / SNR_t for epsilon prediction (Hang et al. 2023, eq. 7
        and sec. 3.4), SNR_t = alpha_bar_t / (1 - alpha_bar_t): 1 where the noise dominates, < 1 near t = 0.
        A v network's eps error is sqrt(alpha_bar_t) times its v error, so on it these are Hang et al.'s
        v-prediction weights, min(SNR_t, gamma) / (SNR_t + 1) on the v MSE: one loss for both targets.
        With a weighting per domain (`--loss-weighting mnistm=min-snr,svhn=eps`), `domains` (B,) long gives
        each image's own; weights of 1 are the plain MSE, so a batch mixes the two in one mean."""
        by_domain = self.min_snr_by_domain
        if not by_domain.any():
            return F.mse_loss(pred, noise)
        a_bar = self.schedule.alphas_cumprod.to(pred.device)[t]
        snr = a_bar / (1 - a_bar)
        weight = (self.cfg.min_snr_gamma / snr).clamp(max=1.0)  # = min(SNR, gamma) / SNR, finite at SNR 0
        if not by_domain.all():
            if domains is None:
                raise ValueError("a loss weighting per domain needs each image's domain")
            weight = torch.where(by_domain.to(pred.device)[domains], weight, torch.ones_like(weight))
        return (weight * (pred - noise).pow(2).mean(dim=(1, 2, 3))).mean()

    def _stop_if_diverged(self, loss: float) -> None:
        """Stop before the weights take a non-finite step; all ranks decide together (one rank raising
        alone would leave the others waiting in DDP's all-reduce)."""
        bad = torch.tensor([0.0 if math.isfinite(loss) else 1.0], device=self.comm)
        if self.world > 1:
            dist.all_reduce(bad, op=dist.ReduceOp.MAX)
        if bad.item():
            raise DifflabError(f"training stopped: the loss became {loss} at step {self.step + 1} (try a lower "
                               f"--lr); nothing was written after the last checkpoint")

    def _update_ema(self):
        update_ema(self.ema, self.model, self.step, self.cfg.ema_decay)
        for ema, decay in zip(self.extra_emas, self.cfg.extra_ema_decays):
            update_ema(ema, self.model, self.step, decay)

    # -- checkpoints ----------------------------------------------------------------------------------
    def train_run(self) -> dict:
        """The run's own record (`difflab digits info`): training seconds over all legs, the number of
        legs (separate processes that made it; 1 = one uninterrupted curve), machine and date."""
        wall = self.wall_before + (self.clock() - self.leg_start)
        return {**run_record(wall, self.legs, self.world, self.device),
                "total_steps": self.total_steps, "time_budget_min": self.cfg.time_budget}

    def _meta(self) -> dict:
        c = asdict(self.cfg)
        self.saved_run = self.train_run()
        return {"kind": TRAIN_KIND, "unet": self.cfg.unet.to_dict(), "step": self.step, "train": c,
                "train_run": self.saved_run,
                "schedule": self.schedule.to_dict(),
                "world_size": self.world}

    def _rng_states(self) -> list[torch.Tensor]:
        state = self.gen.get_state()
        if self.world == 1:
            return [state]
        mine = state.to(self.comm)
        states = [torch.empty_like(mine) for _ in range(self.world)]
        dist.all_gather(states, mine)
        return [s.cpu() for s in states]

    def save(self):
        """Rank 0 writes OUT/checkpoint.safetensors (every rank must call it: the RNG states are gathered)."""
        states = self._rng_states()
        if self.rank != 0:
            return
        tensors = {f"model.{k}": v for k, v in self.model.state_dict().items()}
        tensors.update({f"ema.{k}": v for k, v in self.ema.state_dict().items()})
        for i, ema in enumerate(self.extra_emas):
            tensors.update({f"extra_ema.{i}.{k}": v for k, v in ema.state_dict().items()})
        opt_tensors, groups = flatten_optimizer(self.opt)
        tensors.update(opt_tensors)
        tensors.update({f"rng.{r}": s for r, s in enumerate(states)})
        meta = self._meta()
        meta["param_groups"] = groups
        if self.scaler.is_enabled():
            meta["grad_scaler"] = self.scaler.state_dict()  # plain numbers: fits the JSON metadata
        save_checkpoint(self.ckpt_path, tensors, meta)  # moves the tensors to the CPU itself

    def _read_on_rank0(self, path: Path) -> tuple[dict, dict]:
        """Rank 0 reads the checkpoint and broadcasts it: other nodes need no copy of the run folder.
        A read error on rank 0 is raised on every rank (the others must not wait for data that never comes)."""
        payload = None
        if self.rank == 0:
            try:
                payload = ("ok", load_checkpoint(path))
            except DifflabError as e:
                payload = ("error", str(e))
        if self.world > 1:
            box = [payload]
            dist.broadcast_object_list(box, src=0, device=self.comm)
            payload = box[0]
        if payload[0] == "error":
            raise DifflabError(payload[1])
        return payload[1]

    def resume(self, path: str):
        path = self.ckpt_path if path == "latest" else Path(path)
        tensors, meta = self._read_on_rank0(path)
        if meta.get("kind") != TRAIN_KIND:
            raise DifflabError(f"{path}: not a difflab training checkpoint")
        if diff := first_difference(meta.get("unet", {}), self.cfg.unet):
            raise DifflabError(f"{path}: checkpoint is from another model config ({flag_name(diff[0])}: "
                               f"the run has {diff[1]!r}, this run asks for {diff[2]!r})")
        if meta.get("world_size", 1) != self.world:
            raise DifflabError(f"{path}: saved with {meta.get('world_size')} processes, resuming with {self.world}")
        saved = tuple(meta.get("train", {}).get("extra_ema_decays", ()))
        if saved != self.cfg.extra_ema_decays:  # refused with the other config checks, before any state moves
            raise DifflabError(f"{path}: the run tracks --extra-ema-decays {list(saved)}, this resume asks for "
                               f"{list(self.cfg.extra_ema_decays)} (an EMA cannot start half-way)")
        if conflict := resume_conflict(meta.get("train", {}), self.cfg):  # another recipe is another run
            raise DifflabError(f"{path}: {conflict}")
        load_state_strict(self.model, {k[6:]: v for k, v in tensors.items() if k.startswith("model.")}, path)
        load_state_strict(self.ema, {k[4:]: v for k, v in tensors.items() if k.startswith("ema.")}, path)
        for i, ema in enumerate(self.extra_emas):
            prefix = f"extra_ema.{i}."
            load_state_strict(ema, {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}, path)
        self.opt.load_state_dict(unflatten_optimizer(tensors, meta["param_groups"]))  # moved to the params
        if self.scaler.is_enabled() and "grad_scaler" in meta:
            self.scaler.load_state_dict(meta["grad_scaler"])
        self.gen.set_state(tensors[f"rng.{self.rank}"])
        self.step = int(meta["step"])
        run = meta.get("train_run") or {}
        self.wall_before, self.legs = float(run.get("wall_s", 0.0)), int(run.get("legs", 1)) + 1
        if self.cfg.time_budget is not None:  # keep the fitted curve of the run, do not fit it again
            self.total_steps = int(run.get("total_steps", self.cfg.steps))

    def _check_replicas_agree(self) -> None:
        """DDP keeps replicas identical; verify it before the final save: every tensor of the model's and
        the EMA's state against rank 0's, bit for bit (a checksum could hide differences that cancel)."""
        if self.world == 1:
            return
        differ = []
        for prefix, module in (("model", self.model), ("ema", self.ema),
                               *((f"extra_ema.{i}", e) for i, e in enumerate(self.extra_emas))):
            for name, t in module.state_dict().items():
                mine = t.detach().to(self.comm)
                ref = mine.clone()
                dist.broadcast(ref, src=0)
                if not torch.equal(ref, mine):
                    differ.append(f"{prefix}.{name}")
        bad = torch.tensor([float(len(differ))], device=self.comm)
        dist.all_reduce(bad, op=dist.ReduceOp.MAX)
        if bad.item():
            raise RuntimeError(f"DDP replicas diverged: rank {self.rank} differs from rank 0 in "
                               f"{len(differ)} tensors {differ[:3]} (another rank's differences make this rank stop)")

    # -- the time budget -----------------------------------------------------------------------------------
    def _fit_steps_to_budget(self, budget_s: float, s_per_step: float) -> int:
        """Total steps that fit the budget at the measured step time (rank 0's estimate, shared so every
        rank runs the same curve); at least one step past now."""
        left = budget_s - (self.wall_before + self.clock() - self.leg_start)
        total = torch.tensor([float(self.step + max(1, int(left / max(s_per_step, 1e-9))))], device=self.comm)
        if self.world > 1:
            dist.broadcast(total, src=0)
        return max(int(total.item()), self.step + 1)

    def _agree(self, flag: bool) -> bool:
        """Rank 0's clock decides for all (ranks' clocks differ by a step; all must stop at the same step)."""
        if self.world == 1:
            return flag
        t = torch.tensor([1.0 if flag else 0.0], device=self.comm)
        dist.broadcast(t, src=0)
        return bool(t.item())

    def _snapshot_if_due(self) -> None:
        """Keep the EMA weights each time the run's seconds (all legs) pass a multiple of --snapshot-minutes:
        OUT/snapshots/ema_{M}min.safetensors, with the step and run record (`digits info` reads them)."""
        minutes, wall = self.cfg.snapshot_minutes, self.wall_before + self.clock() - self.leg_start
        due = int(wall // (minutes * 60)) * minutes  # the latest multiple of M reached, in minutes
        earlier_legs = int(self.wall_before // (minutes * 60)) * minutes  # a resumed run kept those
        if due <= max(self.snapshot_done, earlier_legs):
            return
        self.snapshot_done = due
        path = snapshot_path(self.cfg.out_dir, due)
        path.parent.mkdir(exist_ok=True)
        run = {**self.train_run(), "wall_s": round(wall, 1)}
        save_digit_model(path, self.ema, self.schedule, {"train": asdict(self.cfg), "step": self.step,
                                                        "train_run": run})

    # -- the loop ------------------------------------------------------------------------------------------
    def fit(self, progress: bool = True) -> None:
        cfg = self.cfg
        budget = None if cfg.time_budget is None else cfg.time_budget * 60.0
        fits = budget is not None and self.legs == 1  # a resumed budget run keeps its recorded curve
        bar = tqdm(total=self.total_steps, initial=self.step, disable=not progress or self.rank != 0,
                   desc="train", dynamic_ncols=True)
        avg, t0, n0 = None, self.clock(), self.step
        window = (n0, t0, BUDGET_CALIBRATION_STEPS)  # (step, clock) the step time is measured from, and over
        while self.step < self.total_steps:
            loss = self.train_step()
            avg = loss if avg is None else 0.98 * avg + 0.02 * loss
            bar.update(1)
            if fits and self.step - window[0] >= window[2]:
                # the machine's speed drifts (measured: 116 img/s over the first steps, 108 an hour later),
                # so the total is re-fitted from the latest steps' time: the cosine still ends in the budget
                now = self.clock()
                self.total_steps = self._fit_steps_to_budget(budget, (now - window[1]) / (self.step - window[0]))
                bar.total, window = self.total_steps, (self.step, now, BUDGET_REFIT_STEPS)
            if self.step % cfg.log_every == 0:
                ips = (self.step - n0) * cfg.batch_size / max(1e-9, self.clock() - t0)
                bar.set_postfix(loss=f"{avg:.4f}", img_s=f"{ips:.0f}")
            out_of_time = budget is not None and self._agree(self.wall_before + self.clock() - self.leg_start >= budget)
            if self.step % cfg.ckpt_every == 0 or self.step == self.total_steps or out_of_time:
                self.save()
            if cfg.snapshot_minutes is not None and self.rank == 0:
                self._snapshot_if_due()
            if out_of_time:
                break
        bar.close()
        self._check_replicas_agree()
        if self.rank == 0:
            # the final checkpoint's record, not a later clock: a resume starts from that checkpoint's
            # seconds, so the EMA file and its resumed successor must count the same way
            run = self.saved_run if self.saved_run is not None else self.train_run()
            save_digit_model(Path(cfg.out_dir) / "ema.safetensors", self.ema, self.schedule,
                             {"train": asdict(cfg), "step": self.step, "train_run": run})
            for ema, decay in zip(self.extra_emas, cfg.extra_ema_decays):  # recorded as the run it equals
                path = extra_ema_path(cfg.out_dir, decay)
                path.parent.mkdir(exist_ok=True)
                same = asdict(replace(cfg, ema_decay=decay, extra_ema_decays=()))
                save_digit_model(path, ema, self.schedule, {"train": same, "step": self.step, "train_run": run})


def train(cfg: TrainConfig, resume: str | None = None, progress: bool = True, overwrite: bool = False
          ) -> Trainer:
    """Train (or resume) and return the Trainer; writes OUT/checkpoint.safetensors and OUT/ema.safetensors.

    A fresh run (no `resume`) refuses an --out-dir holding another run's files unless `overwrite`.
    Rank 0 alone touches the run folder: it checks it, holds its lock for the run (so a second training
    into it is refused) and writes it; on other nodes the folder need not exist.
    """
    rank, _, _, local_world = dist_env()
    folder = contextlib.nullcontext()
    if rank == 0:  # in place, not staged: the checkpoints must survive a crash for --resume
        folder = inplace_output_dir(cfg.out_dir, overwrite, bool(resume), RUN_FILES, "--resume latest")
    trainer = None
    try:
        with folder:  # a refused folder changes nothing in the process, so the settings come after it
            if rank == 0 and overwrite and not resume:  # the replaced run's snapshots would mix with this one's
                shutil.rmtree(snapshot_dir(cfg.out_dir), ignore_errors=True)
                shutil.rmtree(extra_ema_dir(cfg.out_dir), ignore_errors=True)
            # the node's cores are shared by the processes on this node (LOCAL_WORLD_SIZE), not the world
            torch.set_num_threads(max(1, (os.cpu_count() or 1) // local_world))
            np.seterr(all="ignore")
            trainer = Trainer(cfg)
            if resume:
                trainer.resume(resume)
            trainer.fit(progress)
            if trainer.world > 1:  # leave together: a rank that tore its gloo group down while rank 0 was
                dist.barrier()  # still writing its files aborted now and then (SIGABRT at exit, seen in tests)
    finally:
        if trainer is not None and trainer.owns_group and dist.is_initialized():
            dist.destroy_process_group()  # NCCL warns at exit about a group left open
    return trainer
