"""Range checks for config dataclasses, shared so every job words its refusals the same way.

Written as `lo <= x <= hi` tests on finite values: a plain `x < 0` check lets NaN through (every
comparison with NaN is false), which is how `--lr nan` or `--guidance nan` used to run to garbage.
"""

from __future__ import annotations

import math

from difflab.errors import DifflabError


def _flag(name: str) -> str:
    return name if name.startswith("-") else "--" + name.replace("_", "-")


def check_number(name: str, value, low: float | None = None, high: float | None = None,
                 low_open: bool = False, high_open: bool = False) -> None:
    """Refuse a non-number, NaN/inf, or a value outside [low, high] (an open end excludes the bound)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise DifflabError(f"{_flag(name)} must be a finite number, got {value!r}")
    too_low = low is not None and (value <= low if low_open else value < low)
    too_high = high is not None and (value >= high if high_open else value > high)
    if too_low or too_high:
        lo = "(-inf" if low is None else f"{'(' if low_open else '['}{low:g}"
        hi = "inf)" if high is None else f"{high:g}{')' if high_open else ']'}"
        raise DifflabError(f"{_flag(name)} must be in {lo}, {hi}, got {value:g}")


def check_count(name: str, value, minimum: int = 1) -> None:
    """Refuse a non-integer or an integer below `minimum`."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise DifflabError(f"{_flag(name)} must be a whole number, got {value!r}")
    if value < minimum:
        raise DifflabError(f"{_flag(name)} must be at least {minimum}, got {value}")
