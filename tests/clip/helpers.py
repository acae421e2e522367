"""Small generated image folders for the CLIP tests (no datasets on this machine)."""

import json

import numpy as np
from PIL import Image

NAMES = ["apple", "willow_tree", "aquarium_fish", "sweet_pepper"]


def make_flat_folder(root, per_class=3, names=NAMES, seed=0, size=24):
    """root/images/{c}_{j:03d}.png with a class-dependent mean colour + root/id2label.json."""
    rng = np.random.default_rng(seed)
    images = root / "images"
    images.mkdir(parents=True)
    for c in range(len(names)):
        for j in range(per_class):
            a = np.clip(rng.normal(60 * c, 40, (size, size + 4 * j, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(a).save(images / f"{c}_{j:03d}.png")
    labels = root / "id2label.json"
    labels.write_text(json.dumps({str(i): n for i, n in enumerate(names)}))
    return images, labels


def make_subfolders(root, per_class=2, names=NAMES, seed=1):
    """root/<name>/<j>.jpg, one sub-folder per class."""
    rng = np.random.default_rng(seed)
    for name in names:
        (root / name).mkdir(parents=True)
        for j in range(per_class):
            a = rng.integers(0, 256, (20, 20, 3), dtype=np.uint8)
            Image.fromarray(a).save(root / name / f"{j}.jpg")
    return root
