"""Generate one setting's images and score them, and average the scores over seeds (seed_spread.py,
hybrid_levels.py): accuracy and Fréchet distance per domain, as `digits eval` reports them."""

import shutil
import statistics
from pathlib import Path

from difflab.data import DOMAINS
from difflab.digits.evaluate import evaluate
from difflab.digits.generate import GenerateConfig, generate


def generate_and_score(out, model, schedule, cfg: GenerateConfig) -> tuple[dict, dict]:
    """Write `cfg`'s images to `out` (replaced) with `model`, score them with the shipped classifiers:
    ({domain: {"acc", "fd"}}, generate's timing dict)."""
    shutil.rmtree(Path(out), ignore_errors=True)
    timing = generate(out, model, schedule, cfg, overwrite=True, progress=False)
    domains = evaluate(out)["domains"]
    return {m: {"acc": domains[m]["acc"], "fd": domains[m]["fd_generated_vs_real"]} for m in DOMAINS}, timing


def mean_over_seeds(per_seed: dict) -> dict:
    """{domain: {"acc", "fd"}} averaged over the values of `per_seed` ({seed: {domain: {"acc", "fd"}, ...}})."""
    return {m: {k: statistics.mean(s[m][k] for s in per_seed.values()) for k in ("acc", "fd")} for m in DOMAINS}
