"""`digits train`'s and `digits distill`'s settings (the CLI's flags come from TrainConfig's and
DistillConfig's fields) and the files a training run folder holds.

Apart from the trainer: what only reads a run (the report, the release gate, the recipe benchmark) needs
its settings and file names, not the training loop.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from difflab.checks import check_count, check_guidance, check_number, check_seed, check_weight_decay, flag_name
from difflab.data.datasets import DOMAINS
from difflab.device import check_device
from difflab.diffusion.schedule import BETA_SCHEDULES
from difflab.errors import DifflabError
from difflab.models.unet import UNetConfig
from difflab.training.common import TIMESTEP_SAMPLINGS, domain_weightings


@dataclass
class TrainConfig:
    out_dir: str = "runs/digits"
    steps: int = 6000
    batch_size: int = 128  # global batch, split over DDP ranks
    lr: float = 5e-4
    warmup_steps: int = 200
    min_lr_ratio: float = 0.05  # cosine decay to this fraction of lr
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    ema_decay: float = 0.999
    # more EMA decays tracked beside ema_decay in the same run, each written as OUT/emas/ema_{D}.safetensors
    # at the end: the EMA axis of a recipe search without more training (an EMA never feeds back into the
    # updates, so each file is what a run with --ema-decay D would save as its ema.safetensors)
    extra_ema_decays: tuple[float, ...] = ()
    drop_both: float = 0.10  # P(digit and domain both null): the unconditional model for CFG
    drop_digit: float = 0.05  # P(only digit null)
    drop_domain: float = 0.05  # P(only domain null)
    seed: int = 0
    bf16: bool = True  # autocast: ~1.5x faster on CPU (bf16); on CUDA bf16 or fp16 by the card
    device: str = "auto"  # auto | cpu | cuda | cuda:N; under torchrun each process takes cuda:LOCAL_RANK
    data_root: str | None = None  # None: offline recipes
    train_size: int = 16000  # per domain, synthetic recipes only
    ckpt_every: int = 500
    log_every: int = 50
    unet: UNetConfig = field(default_factory=UNetConfig)
    schedule: str = "linear"
    num_train_timesteps: int = 1000
    # minutes of training: the run measures its step time during warm-up, fits the number of steps (and so
    # the cosine) to the budget, records that number, and stops with a saved checkpoint when time is up
    time_budget: float | None = None
    # "eps": DDPM's L_simple; "min-snr": each timestep's epsilon MSE weighted by min(SNR_t, gamma) / SNR_t
    # (Hang et al. 2023, Min-SNR-gamma: low-noise steps, whose gradients fight the others', count less);
    # or one per domain, "mnistm=min-snr,svhn=eps" (training/common.domain_weightings)
    loss_weighting: str = "eps"
    min_snr_gamma: float = 5.0
    # which timesteps a batch trains on: "uniform" (DDPM), or "log-snr-normal": log-SNR ~ N(mean, std^2)
    # mapped to the nearest t (training/common.draw_timesteps says why and what the defaults keep)
    timestep_sampling: str = "uniform"
    log_snr_mean: float = -1.0
    log_snr_std: float = 2.5
    log_snr_share: float = 1.0  # the share of log-snr-normal's draws taken from the normal; the rest uniform
    # every this many minutes of run time, also keep the EMA weights as OUT/snapshots/ema_{M}min.safetensors
    # (a time-to-quality curve from one run; docs/RESULTS.md)
    snapshot_minutes: float | None = None

    def __post_init__(self):
        """Refuse impossible settings when the config is built, so CLI, API and report share one check."""
        for name in ("steps", "batch_size", "train_size", "ckpt_every", "log_every", "num_train_timesteps"):
            check_count(name, getattr(self, name), 1)
        check_count("warmup_steps", self.warmup_steps, 0)
        if self.time_budget is not None:
            check_number("time_budget", self.time_budget, 0, 7 * 24 * 60, low_open=True)
        check_seed("seed", self.seed)  # seed * 1000 + rank must stay a valid torch seed
        check_number("lr", self.lr, 0, 1, low_open=True)  # AdamW steps of more than 1 are a typo
        for name in ("weight_decay", "grad_clip"):  # grad_clip 0: no clipping
            check_number(name, getattr(self, name), 0)
        check_weight_decay(self.lr, self.weight_decay)
        check_number("ema_decay", self.ema_decay, 0, 1, high_open=True)
        self.extra_ema_decays = tuple(self.extra_ema_decays)  # from JSON metadata: a list
        for decay in self.extra_ema_decays:
            check_number("extra_ema_decays", decay, 0, 1, high_open=True)
        if len({self.ema_decay, *self.extra_ema_decays}) != 1 + len(self.extra_ema_decays):
            raise DifflabError(f"--extra-ema-decays must differ from each other and from --ema-decay "
                               f"{self.ema_decay:g}, got {' '.join(f'{d:g}' for d in self.extra_ema_decays)}")
        for name in ("min_lr_ratio", "drop_both", "drop_digit", "drop_domain"):
            check_number(name, getattr(self, name), 0, 1)
        if self.drop_both + self.drop_digit + self.drop_domain > 1:
            raise DifflabError("--drop-both + --drop-digit + --drop-domain must be at most 1, got "
                               f"{self.drop_both + self.drop_digit + self.drop_domain:g}")
        kinds = domain_weightings(self.loss_weighting, DOMAINS)
        # one spelling per meaning ("svhn=eps,mnistm=min-snr" -> "mnistm=min-snr,svhn=eps", "mnistm=eps,svhn=eps"
        # -> "eps"), so the record and a resume's comparison see the weighting, not the word order
        self.loss_weighting = (kinds[0] if len(set(kinds)) == 1
                               else ",".join(f"{d}={k}" for d, k in zip(DOMAINS, kinds)))
        check_number("min_snr_gamma", self.min_snr_gamma, 0, 1e6, low_open=True)  # above max SNR (1e4): eps
        if self.timestep_sampling not in TIMESTEP_SAMPLINGS:
            raise DifflabError(f"unknown --timestep-sampling {self.timestep_sampling!r} "
                               f"(choose from {', '.join(TIMESTEP_SAMPLINGS)})")
        check_number("log_snr_mean", self.log_snr_mean, -30, 30)  # the linear schedule spans -10.1 to 9.2
        check_number("log_snr_std", self.log_snr_std, 0, 30, low_open=True)
        check_number("log_snr_share", self.log_snr_share, 0, 1, low_open=True)  # 0 would be uniform: say so
        if self.log_snr_share < 1 and self.timestep_sampling != "log-snr-normal":
            raise DifflabError(f"--log-snr-share {self.log_snr_share:g} mixes --timestep-sampling log-snr-normal "
                               f"with uniform draws; this run samples {self.timestep_sampling!r}")
        if self.snapshot_minutes is not None:
            check_number("snapshot_minutes", self.snapshot_minutes, 0, 7 * 24 * 60, low_open=True)
        if self.schedule not in BETA_SCHEDULES:
            raise DifflabError(f"unknown --schedule {self.schedule!r} (choose from {', '.join(BETA_SCHEDULES)})")
        check_device(self.device)


# what a `--resume` may set anew: where and how often the run writes, its device, and --steps (a run is
# extended by resuming with more); every other field shapes the curve, so a resume must repeat it
RESUME_MAY_CHANGE = ("out_dir", "steps", "ckpt_every", "log_every", "snapshot_minutes", "device")


def first_difference(saved: dict, cfg, skip=(), absent: dict | None = None) -> tuple[str, object, object] | None:
    """(field, saved value, cfg's value) of the first field of dataclass `cfg` (those in `skip` aside) whose
    value differs from the `saved` record (a checkpoint's JSON of such a config), or None. A field the record
    lacks (written before the field existed) counts as what that run used: `absent[field]` where given,
    else the field's default; JSON lists compare as tuples."""
    defaults, absent = type(cfg)(), absent or {}
    for key in (k for k in cfg.__dataclass_fields__ if k not in skip):
        want = getattr(cfg, key)
        was = saved.get(key, absent.get(key, getattr(defaults, key)))
        if isinstance(want, tuple) and isinstance(was, list):
            was = tuple(was)
        if was != want:
            return key, was, want
    return None


def resume_conflict(saved: dict, cfg, may_change=RESUME_MAY_CHANGE, skip=("unet",), absent: dict | None = None
                    ) -> str | None:
    """What keeps `cfg` (a TrainConfig or DistillConfig) from resuming the run whose settings record is
    `saved` (a checkpoint's meta["train"] or meta["distill"]), as "--flag: the run has X, this resume asks
    for Y (...)", or None. Fields in `may_change` may differ; those in `skip` are compared elsewhere (the
    training network, `unet`, against the checkpoint's own "unet" record); `absent`: first_difference's."""
    diff = first_difference(saved, cfg, skip=tuple(may_change) + tuple(skip), absent=absent)
    if diff is None:
        return None
    key, was, want = diff
    may = ", ".join(flag_name(k) for k in may_change)
    return (f"{flag_name(key)}: the run has {was!r}, this resume asks for {want!r} (a resume continues "
            f"the same curve; only {may} may change)")


# the files a run writes into its --out-dir; an existing one is never replaced without --resume/--overwrite,
# and other files there are never touched (scripts/train_release.sh keeps its classifiers in the folder)
RUN_FILES = ("checkpoint.safetensors", "ema.safetensors", "snapshots", "emas")
# steps timed before --time-budget fits the run's length: inside the default 200 warm-up steps, whose
# learning rates do not depend on the total, so the fit changes nothing already done
BUDGET_CALIBRATION_STEPS = 20
# then re-fitted every this many steps from their own time (a drifting machine still ends the cosine in time)
BUDGET_REFIT_STEPS = 200


def snapshot_dir(out_dir) -> Path:
    """OUT/snapshots: where a run keeps its --snapshot-minutes EMA weights."""
    return Path(out_dir) / "snapshots"


def snapshot_path(out_dir, minutes: float) -> Path:
    """OUT/snapshots/ema_{M}min.safetensors: the EMA weights after M minutes of training (--snapshot-minutes)."""
    return snapshot_dir(out_dir) / f"ema_{minutes:g}min.safetensors"


def extra_ema_dir(out_dir) -> Path:
    """OUT/emas: where a run writes the weights of its --extra-ema-decays."""
    return Path(out_dir) / "emas"


def extra_ema_path(out_dir, decay: float) -> Path:
    """OUT/emas/ema_{D}.safetensors: the weights of the run's --extra-ema-decays D."""
    return extra_ema_dir(out_dir) / f"ema_{decay:g}.safetensors"


def extra_ema_files(out_dir) -> list[Path]:
    """A run folder's extra EMA files, by name; [] when it has none."""
    return sorted(extra_ema_dir(out_dir).glob("ema_*.safetensors"))


def snapshot_files(out_dir) -> list[tuple[float, Path]]:
    """A run folder's snapshots as (minutes, path), earliest first; [] when it has none."""
    files = snapshot_dir(out_dir).glob("ema_*min.safetensors")
    return sorted((float(p.stem[len("ema_"):-len("min")]), p) for p in files)


JUMP_WEIGHTINGS = ("x0", "balanced")
# what a distillation `--resume` may set anew (the run resumes by itself when its folder has a checkpoint):
# where and how often it writes, its device, --steps (a run is extended by resuming with more: a warm restart
# of the cosine), and the trajectory chunk size (the teacher's pool is complete before the first checkpoint)
DISTILL_RESUME_MAY_CHANGE = ("out_dir", "steps", "ckpt_every", "log_every", "device", "traj_batch")

# fields added after distillation checkpoints were written: what they meant
DEFAULT_IF_ABSENT = {"jump_weighting": "x0", "rollout": 0.0, "rollout_jumps": 1, "final_weight": 0.0,
                     "final_batch": 16}


@dataclass
class DistillConfig:
    out_dir: str = "runs/distill"
    teacher: str | None = None  # None: the shipped teacher
    student_steps: int = 4  # DDIM steps of the student (trailing spacing: 999, 749, 499, 249)
    teacher_steps: int = 20  # teacher DDIM steps per trajectory (trailing); a multiple of student_steps
    guidance_min: float = 1.0  # w drawn uniformly from [min, max] per trajectory
    guidance_max: float = 5.0
    guide: str = "digit"  # the teacher's CFG target, as in `digits generate --guide`
    trajectories: int = 8000
    traj_batch: int = 500
    steps: int = 10500  # student optimisation steps (stage 1 of the shipped student: scripts/distill_release.sh)
    batch_size: int = 128
    lr: float = 1e-4
    warmup_steps: int = 100
    min_lr_ratio: float = 0.1
    grad_clip: float = 1.0
    ema_decay: float = 0.998
    seed: int = 0
    bf16: bool = True
    ckpt_every: int = 200
    log_every: int = 20
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    # "x0": every jump's error in x_next / sqrt(a_next) units as is (the first jump then takes ~85 % of the
    # gradient); "balanced": each jump's error divided by a running mean of its own, so each jump gets an
    # equal share (measured: the first jump's error shrinks ~30x on the way to x_0, the others' barely).
    jump_weighting: str = "x0"
    init: str | None = None  # start from this distillation checkpoint's or student's weights (a new leg)
    # share of the rows at jumps k >= 1 that start from the student's OWN state instead of the teacher's:
    # the EMA student's path of min(k, rollout_jumps) jumps from the teacher's state that many jumps
    # earlier, target still the teacher's x_{t_(k+1)}. At sampling time every jump after the first starts
    # from the student's state, whose error the next jumps carry to the image (measured: the middle jumps
    # make most of the final error); these rows teach the student to steer back onto the teacher's path
    # (DAgger's idea). rollout_jumps >= K - 1: from x_T, i.e. exactly where sampling puts it. Costs one
    # no-grad pass per own jump.
    rollout: float = 0.0
    rollout_jumps: int = 1
    # weight of a final-image term: `final_batch` trajectories per update go the student's whole sampling
    # path from their noise x_T WITH gradients through all K jumps, and its x_0 is compared with the
    # teacher's (the jumps' units: x / sqrt(a), a = 1 at x_0). The jump loss sees one jump at a time and
    # spends ~85 % of its gradient on the first, while the image error comes mostly from the middle jumps
    # (measured, docs/RESULTS.md §7); this term puts gradient where the image error is, as the one-step
    # students of Luhman & Luhman 2021 (arXiv 2101.02388) regress the teacher's final sample. Costs K
    # forward + backward passes per final row. Measured from the shipped student: at lr 1e-4 a fresh
    # optimiser's first updates doubled the final error; at 2e-5, -15 % final error in 1500 updates and no
    # accuracy gain (the mistakes are borderline digits, not the images farthest from the teacher's).
    final_weight: float = 0.0
    final_batch: int = 16

    def __post_init__(self):
        """Refuse impossible settings when built (the shared checks of difflab.checks)."""
        for name in ("student_steps", "teacher_steps", "trajectories", "traj_batch", "steps", "batch_size",
                     "ckpt_every", "log_every", "rollout_jumps", "final_batch"):
            check_count(name, getattr(self, name), 1)
        check_count("warmup_steps", self.warmup_steps, 0)
        if self.jump_weighting not in JUMP_WEIGHTINGS:
            raise DifflabError(f"--jump-weighting must be one of {', '.join(JUMP_WEIGHTINGS)}, "
                               f"not {self.jump_weighting!r}")
        if self.teacher_steps % self.student_steps:
            raise DifflabError(f"--teacher-steps {self.teacher_steps} is not a multiple of --student-steps "
                               f"{self.student_steps}")
        check_guidance("guidance_min", self.guidance_min)
        check_guidance("guidance_max", self.guidance_max)
        if self.guidance_min > self.guidance_max:
            raise DifflabError(f"--guidance-min {self.guidance_min:g} is above --guidance-max {self.guidance_max:g}")
        check_number("lr", self.lr, 0, 1, low_open=True)
        check_number("rollout", self.rollout, 0, 1)
        check_number("final_weight", self.final_weight, 0, 100)  # beyond 100 the jump loss (~0.06) is lost
        check_number("grad_clip", self.grad_clip, 0)  # 0: no clipping
        check_number("ema_decay", self.ema_decay, 0, 1, high_open=True)
        check_number("min_lr_ratio", self.min_lr_ratio, 0, 1)
        check_seed("seed", self.seed)
        if self.guide not in ("digit", "both"):
            raise DifflabError(f"unknown --guide {self.guide!r} (digit or both)")
        check_device(self.device)
