"""One entry point for digit data: `load_domain(domain, split)` from a recipe (default) or real files.

Synthesised sets are deterministic given the seed and cached under ~/.cache/difflab (or
$DIFFLAB_CACHE), since rendering 16k font crops takes minutes on 2 cores.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from difflab.errors import DifflabError
from difflab.io import atomic_path

DOMAINS = ("mnistm", "svhn")
RECIPE_VERSION = 1


@dataclass
class DigitSet:
    images: np.ndarray  # (N, 28, 28, 3) uint8
    labels: np.ndarray  # (N,) int64 in 0-9

    def __len__(self) -> int:
        return len(self.labels)


def to_model_range(images_uint8: np.ndarray) -> torch.Tensor:
    """(N, 28, 28, 3) uint8 -> (N, 3, 28, 28) float32 in [-1, 1]."""
    return torch.from_numpy(images_uint8).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)


def cache_dir() -> Path:
    return Path(os.environ.get("DIFFLAB_CACHE", Path.home() / ".cache" / "difflab"))


def _synth(domain: str, split: str, size: int, seed: int) -> DigitSet:
    from difflab.data.mnistm import make_mnistm
    from difflab.data.svhn import fonts_fingerprint, make_svhn_style

    key = f"v{RECIPE_VERSION}_{domain}_{split}_{size}_{seed}"
    if domain == "svhn":
        key += f"_{fonts_fingerprint()}"
    path = cache_dir() / f"{key}.npz"
    if path.is_file():
        with np.load(path) as z:
            return DigitSet(z["images"], z["labels"])
    if domain == "mnistm":
        # `size` for MNIST-M train = copies of each of the 4000 train digits; val = 1000 fixed digits
        images, labels = make_mnistm(split, seed=seed, copies=max(1, size // 4000))
    else:
        images, labels = make_svhn_style(split, n_per_class=max(1, size // 10), seed=seed)
    try:
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as f:
                np.savez(f, images=images, labels=labels)
    except DifflabError:
        pass  # an unwritable cache only costs time
    return DigitSet(images, labels)


def load_domain(domain: str, split: str = "train", root: str | os.PathLike | None = None,
                size: int | None = None, seed: int = 0) -> DigitSet:
    """Digits of one domain.

    root=None: the offline recipe (train: 16000 images, val: 1000, unless `size`).
    root=DIR: real data, DIR/{domain}/{split}.csv + data/*.png, or, for svhn, DIR/svhn/{split}_32x32.mat.
    """
    if domain not in DOMAINS:
        raise DifflabError(f"unknown domain {domain!r} (choose from {', '.join(DOMAINS)})")
    if split not in ("train", "val"):
        raise DifflabError(f"unknown split {split!r} (train or val)")
    if root is None:
        return _synth(domain, split, size or (16000 if split == "train" else 1000), seed)
    from difflab.data.readers import read_csv_split, read_svhn_mat

    root = Path(root)
    if not root.is_dir():
        raise DifflabError(f"{root}: data folder not found")
    mat = root / domain / ("train_32x32.mat" if split == "train" else "test_32x32.mat")
    if domain == "svhn" and mat.is_file():
        return DigitSet(*read_svhn_mat(mat))
    return DigitSet(*read_csv_split(root / domain, split))
