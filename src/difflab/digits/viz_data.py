"""`difflab data preview`: a labelled 10x10 grid per domain of the training data."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from difflab.checks import check_seed
from difflab.data import DOMAINS, load_domain
from difflab.io import inplace_output_dir
from difflab.viz import grid, save_image


def preview(out_dir, data_root=None, seed: int = 0, split: str = "val") -> list[Path]:
    """Write OUT_DIR/{domain}_preview.png (row d: ten examples of digit d); returns the paths."""
    check_seed("seed", seed)
    images = []  # every domain is read before anything is written: a bad file must not leave half a preview
    for domain in DOMAINS:
        ds = load_domain(domain, split, root=data_root, seed=seed)
        tiles = []
        for d in range(10):
            idx = np.flatnonzero(ds.labels == d)[:10]
            tiles += [ds.images[i] for i in idx] + [np.full((28, 28, 3), 255, np.uint8)] * (10 - len(idx))
        img = grid(tiles, 10, scale=3, row_labels=[str(d) for d in range(10)],
                   title=f"{domain} ({split} split, {'real files' if data_root else 'offline recipe'})")
        images.append((img, f"{domain}_preview.png"))
    # OUT may hold other files (a preview beside a run's checkpoints): only the previews are this run's, and
    # each run replaces them; the lock keeps two previews into one folder from interleaving
    with inplace_output_dir(out_dir, overwrite=True, run_files=[name for _, name in images]) as out:
        for img, name in images:
            save_image(img, out / name)
    return [out / name for _, name in images]
