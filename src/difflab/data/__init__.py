"""Digit datasets: MNIST-M and SVHN-style recipes (offline) and readers for the real data."""

from difflab.data.datasets import DOMAINS, DigitSet, load_domain, to_model_range

__all__ = ["DOMAINS", "DigitSet", "load_domain", "to_model_range"]
