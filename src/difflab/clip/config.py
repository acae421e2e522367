"""Options of the CLIP zero-shot job, kept free of heavy imports so the CLI can read its defaults."""

from __future__ import annotations

from dataclasses import dataclass

from difflab.checks import check_count


@dataclass
class ZeroShotConfig:
    """Options of `difflab clip zeroshot` (the CLI is checked against these defaults)."""

    images_dir: str
    model: str
    labels: str | None = None
    templates: str = "single"
    batch_size: int = 32
    out: str | None = None
    overwrite: bool = False
    device: str = "auto"  # auto | cpu | cuda | cuda:N (difflab.device.resolve_device)
    top_k: int = 5
    n_cases: int = 5

    def __post_init__(self):
        """Checked when built, so the CLI, the API and the report share one check."""
        self.validate()

    def validate(self) -> None:
        """Refuse impossible numbers and a device that does not exist before any model is loaded."""
        from difflab.device import check_device  # here: this module stays free of torch at import

        check_device(self.device)
        check_count("batch_size", self.batch_size)
        check_count("top_k", self.top_k)
        check_count("cases", self.n_cases, 0)
