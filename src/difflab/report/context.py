"""`Context`: what every report section reads (settings, the loaded model) and writes (files, numbers).

Its own module so that the sections (digits.py, ddim.py, fewstep.py, extras.py) and run.py, which calls
them, all import it from here and none imports another's runner: no import circle inside report/.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from pathlib import Path

import torch

from difflab.diffusion.schedule import NoiseSchedule
from difflab.report.config import ReportConfig


def device_flag(device: str) -> list[str]:
    """The --device flag of a caption's command: none for "auto", the default of every command."""
    return [] if device == "auto" else ["--device", device]


@dataclass
class Context:
    """What every section reads (settings, model) and writes (files under `stage`, numbers)."""

    stage: Path  # where files go now; moved to `out` at the end
    out: str  # the output folder as the user named it, for the commands in captions
    cfg: ReportConfig
    model_path: str | None
    model: torch.nn.Module  # the digit teacher, eval mode (models.digits.load_digit_model)
    schedule: NoiseSchedule
    classifiers: dict  # {'mnistm' | 'svhn': path or None (the shipped one)}
    data_root: str | None = None
    zeroshot: dict | None = None
    ti_dir: str | None = None
    progress: bool = True
    report_command: str = ""  # the `difflab report` command of this run
    student_path: str | None = None  # 'student' (the shipped one) or a path; None or a missing file: no student
    numbers: dict = field(default_factory=dict)

    def path(self, rel: str) -> str:
        """`rel` inside the output folder as the user named it (for the commands shown in captions)."""
        return str(Path(self.out) / rel)

    def model_flag(self, ddim: bool = False) -> list[str]:
        """The flags that name this report's digit model to `digits generate` (or, ddim=True, to `ddim`)."""
        if self.model_path is None:  # the teacher: `digits generate` alone would use the student
            return [] if ddim else ["--model", "teacher"]
        return ["--digits-model" if ddim else "--model", str(self.model_path)]

    @staticmethod
    def command(*args: str) -> str:
        """A shell-quoted `difflab ARGS...` command line."""
        return shlex.join(["difflab", *map(str, args)])
