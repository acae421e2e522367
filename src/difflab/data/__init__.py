"""Digit datasets: MNIST-M and SVHN-style recipes (offline) and readers for the real data; the new styles and
symbol that personalization learns (data/styles.py, issue 12)."""

from difflab.data.datasets import DOMAINS, DigitSet, load_domain, to_model_range
from difflab.data.styles import STYLES, SYMBOL, make_style, make_symbol

__all__ = ["DOMAINS", "STYLES", "SYMBOL", "DigitSet", "load_domain", "make_style", "make_symbol", "to_model_range"]
