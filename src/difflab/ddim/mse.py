"""Per-image MSE between our outputs and ground-truth images, on the 0-255 and the 0-1 scale."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from difflab.ddim.noise import natural_key
from difflab.errors import DifflabError
from difflab.io import image_files, load_image


def _images(folder: Path) -> dict[str, Path]:
    if not folder.is_dir():
        raise DifflabError(f"{folder}: folder not found")
    found: dict[str, Path] = {}
    for p in image_files(folder):
        if p.stem in found:
            raise DifflabError(f"{folder}: two images named {p.stem} ({found[p.stem].name}, {p.name})")
        found[p.stem] = p
    if not found:
        raise DifflabError(f"{folder}: no images in this folder")
    return found


def compare_dirs(out_dir, gt_dir) -> list[tuple[str, float, float, int]]:
    """[(stem, mse on 0-255 pixels, mse on 0-1 pixels, max |difference| in 0-255 levels)] for images
    paired by file stem (RGB). The max shows off-by-one mappings: a reference that truncates instead
    of rounding gives max 1 and an MSE up to about 0.5 on the 0-255 scale.

    Every image in either folder must have a partner of the same size, or nothing is compared."""
    out, gt = _images(Path(out_dir)), _images(Path(gt_dir))
    missing_out = sorted(set(gt) - set(out), key=natural_key)
    missing_gt = sorted(set(out) - set(gt), key=natural_key)
    if missing_out or missing_gt:
        parts = [f"{gt_dir} has {', '.join(missing_out)} but {out_dir} does not"] if missing_out else []
        parts += [f"{out_dir} has {', '.join(missing_gt)} but {gt_dir} does not"] if missing_gt else []
        raise DifflabError(f"missing pairs: {'; '.join(parts)}")
    rows = []
    for stem in sorted(gt, key=natural_key):
        a = load_image(out[stem]).astype(np.float64)
        b = load_image(gt[stem]).astype(np.float64)
        if a.shape != b.shape:
            raise DifflabError(f"{out[stem]}: size {a.shape[1]}x{a.shape[0]} but {gt[stem]} is "
                               f"{b.shape[1]}x{b.shape[0]}")
        mse255 = float(((a - b) ** 2).mean())
        rows.append((stem, mse255, mse255 / 255.0**2, int(np.abs(a - b).max())))
    return rows
