"""Settings of textual inversion's jobs: train, generate, compose (no torch import: the CLI builds its options
from these through difflab.config_args)."""

from __future__ import annotations

from dataclasses import dataclass

from difflab.checks import check_count, check_guidance, check_number, check_seed, check_weight_decay
from difflab.errors import DifflabError
from difflab.personalize.templates import TEMPLATES

# --feather is a blur sigma in latent pixels (1/8 of the image's): SD v1's latents are 64 wide, so far
# beyond 100 every mask is a constant
MAX_FEATHER = 100.0


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


def check_sampling(cfg) -> None:
    """The SD sampling settings that `ti generate` and `ti compose` share: steps, guidance, seed, size."""
    check_count("steps", cfg.steps)
    check_guidance("guidance", cfg.guidance)
    check_seed("seed", cfg.seed)
    check_size(cfg.size)


def check_size(size: int | None) -> None:
    """--size: None (the model's own) or a multiple of 8 (the VAE's downsampling) of at least 8."""
    if size is not None:
        check_count("size", size, 8)
        if size % 8:
            raise DifflabError(f"--size must be a multiple of 8, got {size}")


@dataclass
class GenerateConfig:
    """`difflab ti generate`: images per prompt and how each is sampled."""

    per_prompt: int = 25
    steps: int = 50  # the pipeline's scheduler steps (DDIM for SD v1)
    guidance: float = 7.5  # StableDiffusionPipeline's default
    seed: int = 0
    batch_size: int = 4  # images per pipeline call (one prompt per call)
    size: int | None = None  # None: the model's own (SD v1: 512)

    def __post_init__(self):
        """Checked when built, so the CLI and the API refuse impossible settings before minutes of loading."""
        self.check()

    def check(self) -> None:
        check_count("per_prompt", self.per_prompt)
        check_count("batch_size", self.batch_size)
        check_sampling(self)


@dataclass
class ComposeConfig:
    """`difflab ti compose`: how the composed images are sampled and blended (difflab.personalize.compose)."""

    steps: int = GenerateConfig.steps
    guidance: float = GenerateConfig.guidance
    seed: int = 0
    num: int = 1  # images, seeds seed..seed+num-1
    size: int | None = None
    feather: float = 1.0  # mask blur sigma in latent pixels
    base_weight: float = 0.0  # share of the whole-prompt path everywhere (0: only where no mask covers)
    negative_prompt: str = ""
    with_paths: bool = False  # also save each region prompt alone with the same noise

    def __post_init__(self):
        """Checked when built, so the CLI and the API refuse impossible settings before the model loads."""
        self.check()

    def check(self) -> None:
        check_count("num", self.num)
        check_sampling(self)
        check_number("feather", self.feather, 0, MAX_FEATHER)
        check_number("base_weight", self.base_weight, 0, 1)
