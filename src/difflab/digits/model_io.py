"""TEMPORARY (issue 14, removed before the refactor is committed): distill.py still imports from here."""

from difflab.models.digits import load_digit_model, save_digit_model  # noqa: F401
from difflab.models.state import load_state_strict  # noqa: F401
