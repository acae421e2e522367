"""Options of the CLIP zero-shot job, kept free of heavy imports so the CLI can read its defaults."""

from __future__ import annotations

from dataclasses import dataclass

from difflab.errors import DifflabError


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

    def validate(self) -> None:
        """Refuse impossible numbers and a device that does not exist before any model is loaded."""
        from difflab.device import resolve_device  # here: this module stays free of torch at import

        resolve_device(self.device)
        for name, flag, low in (("batch_size", "--batch-size", 1), ("top_k", "--top-k", 1),
                                ("n_cases", "--cases", 0)):
            if int(getattr(self, name)) < low:
                raise DifflabError(f"config.py: {flag} must be >= {low}, got {getattr(self, name)}")
