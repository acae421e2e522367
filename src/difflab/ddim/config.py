"""Settings of the DDIM job: dataclasses, from which the CLI takes its defaults (difflab.config_args)."""

from __future__ import annotations

from dataclasses import dataclass

from difflab.checks import check_count, check_eta, check_etas, check_number, check_seed
from difflab.errors import DifflabError

ETA_GRID = (0.0, 0.25, 0.5, 0.75, 1.0)  # rows of `ddim eta-grid`

PIXEL_MODES = ("clamp", "minmax")
SAMPLERS = ("ddim", "dpmpp-2m", "unipc")  # `ddim sample --sampler` (difflab.diffusion.solvers.make_sampler's names)
FINAL_ALPHAS = ("one", "first")  # alpha_bar after the last step: 1.0, or alpha_bar[0]
# DDPM's schedule, the default docs/ddim.md states, used when neither the user nor the model file names one
DEFAULT_SCHEDULE = {"kind": "linear", "num_train_timesteps": 1000, "beta_start": 1e-4, "beta_end": 2e-2}


@dataclass
class DDIMConfig:
    steps: int = 50
    sampler_name: str = "ddim"  # --sampler, one of SAMPLERS; dpmpp-2m and unipc are deterministic ODE solvers (eta 0)
    karras: bool = False  # Karras sigmas, dpmpp-2m/unipc only (they then place their own timesteps)
    # leading | trailing | linspace (diffusers' names); None: the sampler's default, as diffusers' own:
    # leading for ddim, linspace for dpmpp-2m/unipc
    spacing: str | None = None
    offset: int = 0  # added to leading timesteps (diffusers' steps_offset): 1 gives 981, 961, ..., 1
    eta: float = 0.0
    clip_x0: float | None = None  # clip predicted x0 to [-c, c]; None = no clipping
    final_alpha: str = "one"
    # None = take it from the model file if it records one, else DEFAULT_SCHEDULE
    beta_schedule: str | None = None
    beta_start: float | None = None
    beta_end: float | None = None
    train_timesteps: int | None = None
    batch_size: int = 16
    seed: int = 0
    to_pixels: str = "clamp"
    invert_iters: int = 1  # fixed-point iterations per inversion step (0: classic, diffusers' inverse)

    def __post_init__(self):
        """Checked when built, so the CLI, the API and the report share one check."""
        self.check()

    def check(self) -> None:
        check_eta("eta", self.eta)
        check_count("steps", self.steps)
        check_count("offset", self.offset, 0)  # its upper end depends on the schedule: the sampler checks it
        check_count("invert_iters", self.invert_iters, 0)
        check_count("batch_size", self.batch_size)
        check_seed("seed", self.seed)
        if self.clip_x0 is not None:
            check_number("clip_x0", self.clip_x0, 0, low_open=True)
        for name in ("beta_start", "beta_end"):  # None: the model's (checked together in `schedule`)
            if getattr(self, name) is not None:
                check_number(name, getattr(self, name), 0, 1, low_open=True, high_open=True)
        if self.beta_start is not None and self.beta_end is not None and self.beta_start > self.beta_end:
            raise DifflabError(f"--beta-start {self.beta_start:g} must not exceed --beta-end {self.beta_end:g}")
        if self.train_timesteps is not None:
            check_count("train_timesteps", self.train_timesteps)
        if self.to_pixels not in PIXEL_MODES:
            raise DifflabError(f"--to-pixels must be one of {', '.join(PIXEL_MODES)}, got {self.to_pixels!r}")
        if self.final_alpha not in FINAL_ALPHAS:
            raise DifflabError(f"--final-alpha must be one of {', '.join(FINAL_ALPHAS)}, "
                               f"got {self.final_alpha!r}")
        if self.sampler_name not in SAMPLERS:
            raise DifflabError(f"--sampler must be one of {', '.join(SAMPLERS)}, got {self.sampler_name!r}")
        if self.sampler_name == "ddim":
            if self.karras:
                raise DifflabError("--karras applies to --sampler dpmpp-2m or unipc, not ddim")
            return
        # options of the DDIM update that the ODE solvers do not have: refuse rather than ignore them
        if self.eta > 0:
            raise DifflabError(f"--eta applies to --sampler ddim only ({self.sampler_name} is deterministic), "
                               f"got --eta {self.eta:g}")
        if self.offset:
            raise DifflabError(f"--offset applies to --sampler ddim only, not {self.sampler_name}")
        if self.final_alpha != "one":
            raise DifflabError(f"--final-alpha {self.final_alpha} applies to --sampler ddim only "
                               f"({self.sampler_name} ends at alpha_bar = 1)")
        if self.karras and self.spacing is not None:
            raise DifflabError("--karras places its own timesteps: drop --spacing")

    def schedule(self, model_schedule: dict | None = None):
        """The NoiseSchedule: each field from the user if set, else from the model file, else the default."""
        from difflab.diffusion.schedule import NoiseSchedule

        s = {**DEFAULT_SCHEDULE, **(model_schedule or {})}
        for key, value in (("kind", self.beta_schedule), ("beta_start", self.beta_start),
                           ("beta_end", self.beta_end), ("num_train_timesteps", self.train_timesteps)):
            if value is not None:
                s[key] = value
        if s["num_train_timesteps"] < 1:
            raise DifflabError(f"--train-timesteps must be at least 1, got {s['num_train_timesteps']}")
        if not 0 < s["beta_start"] <= s["beta_end"] < 1:
            raise DifflabError(f"betas must satisfy 0 < beta_start <= beta_end < 1, got "
                               f"{s['beta_start']}..{s['beta_end']}")
        return NoiseSchedule.from_dict(s)

    def sampler(self, schedule, eta: float | None = None):
        """The sampler with these settings: a DDIMSampler (eta overridable, for the eta grid and inversion),
        or for --sampler dpmpp-2m/unipc a difflab.diffusion.solvers DPMSolverPP2M/UniPC."""
        self.check()
        if self.sampler_name != "ddim":
            from difflab.diffusion.solvers import make_sampler

            if eta:
                raise DifflabError(f"eta applies to the ddim sampler only, not {self.sampler_name} (got {eta:g})")
            return make_sampler(self.sampler_name, schedule, self.steps, spacing=self.spacing, clip_x0=self.clip_x0,
                                karras=self.karras)
        from difflab.diffusion.sampling import DDIMSampler

        eta = self.eta if eta is None else eta
        check_eta("eta", eta)
        return DDIMSampler(schedule, steps=self.steps, spacing=self.spacing or "leading", offset=self.offset,
                           eta=eta, clip_x0=self.clip_x0, final_alpha_one=self.final_alpha == "one")


@dataclass
class EtaGridConfig:
    """`ddim eta-grid`: which etas (rows) and how many noises (columns)."""

    etas: tuple[float, ...] = ETA_GRID
    columns: int = 4

    def __post_init__(self):
        check_etas("etas", self.etas)
        check_count("columns", self.columns)


@dataclass
class InterpolateConfig:
    """`ddim interpolate`: how many images from one noise to the other (alphas 0, 1/(num-1), ..., 1)."""

    num: int = 11  # alpha steps of 0.1

    def __post_init__(self):
        check_count("num", self.num, 2)
