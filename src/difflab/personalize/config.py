"""Training settings of textual inversion (no torch import: the CLI builds its options from this)."""

from __future__ import annotations

from dataclasses import dataclass

from difflab.checks import check_count, check_number, check_seed, check_weight_decay
from difflab.errors import DifflabError
from difflab.personalize.templates import TEMPLATES


@dataclass
class TrainConfig:
    token: str = "<new1>"
    init_word: str = "object"
    vectors: int = 1
    what: str = "object"          # object | style: which caption templates
    steps: int = 3000
    lr: float = 2e-3              # diffusers' example: 5e-4 scaled by batch 1 x grad-accum 4
    weight_decay: float = 1e-2
    resolution: int = 512
    batch_size: int = 1
    grad_accum: int = 4
    seed: int = 0
    flip: float = 0.5             # probability of training on the mirrored photo
    validate_every: int = 500     # 0 = never
    num_validation: int = 4
    validation_steps: int = 25
    checkpoint_every: int = 500

    def __post_init__(self):
        """Checked when built, so the CLI, the API and the benchmarks share one check."""
        self.check()

    def check(self) -> None:
        if self.what not in TEMPLATES:
            raise DifflabError(f"--what {self.what!r}: use one of {', '.join(TEMPLATES)}")
        for name in ("vectors", "steps", "batch_size", "grad_accum", "resolution", "checkpoint_every",
                     "num_validation", "validation_steps"):
            check_count(name, getattr(self, name), 1)
        check_count("validate_every", self.validate_every, 0)
        check_seed("seed", self.seed)
        check_number("lr", self.lr, 0, 1, low_open=True)  # AdamW steps of more than 1 are a typo
        check_number("weight_decay", self.weight_decay, 0)
        check_weight_decay(self.lr, self.weight_decay)
        check_number("flip", self.flip, 0, 1)
        if self.resolution % 8:
            raise DifflabError(f"--resolution {self.resolution}: must be a multiple of 8")
