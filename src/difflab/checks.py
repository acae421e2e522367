"""Range checks for config dataclasses, and the one reader of comma-separated lists, shared so every job
words its refusals the same way.

Written as `lo <= x <= hi` tests on finite values: a plain `x < 0` check lets NaN through (every
comparison with NaN is false), which is how `--lr nan` or `--guidance nan` used to run to garbage.
"""

from __future__ import annotations

import math

from difflab.errors import DifflabError

# the largest count any flag takes (images, steps, sizes, batch): 2**31 - 1, a C int. Beyond it a request
# cannot finish (or overflows torch's sizes), so it is refused as a typo before any work
MAX_COUNT = 2**31 - 1
# useful CFG scales are ~1-20; far above, the guided prediction only saturates (and 1e30 overflows to inf)
MAX_GUIDANCE = 100.0


def flag_name(name: str) -> str:
    """The command-line spelling of a config field: `lr_warmup` -> `--lr-warmup` (a flag is kept as is)."""
    return name if name.startswith("-") else "--" + name.replace("_", "-")


def check_number(name: str, value, low: float | None = None, high: float | None = None,
                 low_open: bool = False, high_open: bool = False) -> None:
    """Refuse a non-number, NaN/inf, or a value outside [low, high] (an open end excludes the bound)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise DifflabError(f"{flag_name(name)} must be a finite number, got {value!r}")
    too_low = low is not None and (value <= low if low_open else value < low)
    too_high = high is not None and (value >= high if high_open else value > high)
    if too_low or too_high:
        lo = "(-inf" if low is None else f"{'(' if low_open else '['}{low:g}"
        hi = "inf)" if high is None else f"{high:g}{')' if high_open else ']'}"
        raise DifflabError(f"{flag_name(name)} must be in {lo}, {hi}, got {value:g}")


def check_count(name: str, value, minimum: int = 1, maximum: int = MAX_COUNT) -> None:
    """Refuse a non-integer or an integer outside [minimum, maximum]."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise DifflabError(f"{flag_name(name)} must be a whole number, got {value!r}")
    if value < minimum:
        raise DifflabError(f"{flag_name(name)} must be at least {minimum}, got {value}")
    if value > maximum:
        raise DifflabError(f"{flag_name(name)} must be at most {maximum}, got {value}")


def check_seed(name: str, value) -> None:
    """Seeds are whole numbers in [0, 2**32): jobs derive per-chunk and per-rank seeds from them (seed *
    100003 + i), which must stay within torch's 64-bit seeds; negative seeds are refused everywhere."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise DifflabError(f"{flag_name(name)} must be a whole number, got {value!r}")
    if not 0 <= value < 2**32:
        raise DifflabError(f"{flag_name(name)} must be at least 0 and below 2**32, got {value}")


def check_guidance(name: str, value) -> None:
    """A classifier-free guidance scale: finite, in [0, MAX_GUIDANCE]."""
    check_number(name, value, 0, MAX_GUIDANCE)


def check_eta(name: str, value) -> None:
    """A DDIM eta in [0, 1]: 0 is the deterministic sampler, 1 DDPM's posterior variance; above 1 sigma can
    exceed sqrt(1 - alpha_bar_prev), and the update's direction term sqrt(1 - alpha_bar_prev - sigma^2) has
    no real value."""
    check_number(name, value, 0, 1)


def check_etas(name: str, values) -> None:
    """A non-empty list of etas (the rows of an eta grid)."""
    if not values:
        raise DifflabError(f"{flag_name(name)}: give at least one value")
    for eta in values:
        check_eta(name, eta)


def parse_list(text, kind, name: str, example: str) -> list:
    """'1,2,3' (or a list or tuple) -> [kind(item), ...]: the one reader of comma-separated flag values.
    Only the syntax is checked here; ranges are each caller's (e.g. check_guidance per item)."""
    items = text.split(",") if isinstance(text, str) else list(text)
    try:
        return [kind(str(item).strip()) for item in items]
    except ValueError:
        what = "integers" if kind is int else "numbers"
        raise DifflabError(f"{flag_name(name)}: expected comma-separated {what} like {example}, got {text!r}") from None


def check_weight_decay(lr: float, weight_decay: float) -> None:
    """AdamW multiplies the weights by 1 - lr * weight_decay each step: at 1 or more that wipes or flips
    them, so the product must stay below 1 (both already checked finite and >= 0)."""
    if lr * weight_decay >= 1:
        raise DifflabError(f"--weight-decay {weight_decay:g} times --lr {lr:g} must be below 1 (AdamW scales "
                           "the weights by 1 - lr * weight_decay each step)")


def check_digit(name: str, value) -> None:
    """A digit class: a whole number in 0..9."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 9:
        raise DifflabError(f"{flag_name(name)} must be in 0..9, got {value!r}")
