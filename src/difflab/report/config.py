"""Settings of `difflab report`: one dataclass, from which the CLI takes its defaults.

The defaults keep a full report under 5 minutes on a 2-core CPU (see docs/results/report.md): 10 images
per digit and domain for the grids, the accuracy table and each scale of the sweep; the sweep then
reuses the grids' images at their scale instead of generating them twice; chunks of 20 images keep the
replay of the reverse process short.
"""

from __future__ import annotations

from dataclasses import dataclass

from difflab.checks import check_count, check_digit, check_etas, check_guidance, check_seed
from difflab.ddim.config import EtaGridConfig, InterpolateConfig
from difflab.device import check_device
from difflab.digits.generate import TEACHER_STEPS, GenerateConfig
from difflab.digits.reverse import DEFAULT_TIMESTEPS
from difflab.digits.sweep import DEFAULT_SCALES, parse_scales
from difflab.errors import DifflabError


@dataclass
class ReportConfig:
    # digits: grids, accuracy table, reverse process
    per_digit: int = 10
    guidance: float = GenerateConfig.guidance  # the report shows what `digits generate` makes by default
    steps: int = TEACHER_STEPS  # the report shows the teacher (reverse process, sweep, DDIM figures)
    seed: int = 0
    # 20, not generate's 250: the reverse process replays the whole chunk holding its image, and 20-image
    # chunks cost it seconds instead of a minute; on 2 cores the grids take the same time (measured)
    batch_size: int = 20
    bf16: bool = True
    digit: int = 0  # the digit of the reverse process and of the DDIM figures
    timesteps: tuple[int, ...] = DEFAULT_TIMESTEPS
    # guidance sweep
    sweep_scales: tuple[float, ...] = DEFAULT_SCALES
    sweep_per_digit: int = 10
    # DDIM figures on the digit model (MNIST-M domain, `ddim` defaults otherwise)
    ddim_steps: int = 50
    etas: tuple[float, ...] = EtaGridConfig.etas
    eta_columns: int = EtaGridConfig.columns
    interp_num: int = InterpolateConfig.num
    invert_count: int = 4
    # CFG > 1 extrapolates away from both predictions, which the first-order inverse ODE step does not
    # undo well; the conditional model (w = 1) is the usual choice for inversion
    invert_guidance: float = 1.0
    # where every network of the report runs (teacher, student, classifiers, DDIM figures, CLIP)
    device: str = "auto"

    def __post_init__(self):
        """Checked when built, so the CLI, the API and `report_command` share one check."""
        self.check()

    def check(self) -> None:
        """Refuse impossible settings before any work (timesteps are checked against the model's T)."""
        for name, low in (("per_digit", 1), ("steps", 1), ("batch_size", 1), ("sweep_per_digit", 1),
                          ("ddim_steps", 1), ("eta_columns", 1), ("interp_num", 2), ("invert_count", 1)):
            check_count(name, getattr(self, name), low)
        check_seed("seed", self.seed)
        for name in ("guidance", "invert_guidance"):
            check_guidance(name, getattr(self, name))
        check_digit("digit", self.digit)
        if self.invert_count > self.per_digit:
            raise DifflabError(f"--invert-count {self.invert_count} exceeds --per-digit {self.per_digit}")
        check_etas("etas", self.etas)
        parse_scales(list(self.sweep_scales), "--sweep-scales")
        check_device(self.device)  # a device that is not there: one line, before any work
        for t in self.timesteps:  # their upper end is the model's T: checked once it is loaded
            check_count("timesteps", t, 0)

    def generate_config(self, per_digit: int | None = None, guidance: float | None = None):
        return GenerateConfig(per_digit=per_digit or self.per_digit, model="teacher", sampler="ddim",
                              guidance=self.guidance if guidance is None else guidance, steps=self.steps,
                              seed=self.seed, batch_size=self.batch_size, bf16=self.bf16, device=self.device)
