"""difflab: compact, CPU-friendly diffusion toolkit."""

__version__ = "0.1.0"
