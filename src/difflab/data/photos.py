"""Colour photos that ship inside installed wheels (scikit-image, scikit-learn, matplotlib).

They stand in for BSDS500 (MNIST-M's backgrounds) and street textures (SVHN-style backgrounds).
Only images bundled in the wheels are used: other skimage.data images download at run time.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
from PIL import Image

from difflab.io import load_image

_SKIMAGE = ("astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field", "retina",
            "immunohistochemistry", "stereo_motorcycle")
SHORT_SIDE = 320  # about BSDS500's 481x321, so a 28x28 crop holds texture, not a flat patch


def _resize_short(img: np.ndarray, short: int = SHORT_SIDE) -> np.ndarray:
    h, w = img.shape[:2]
    s = short / min(h, w)
    return np.asarray(Image.fromarray(img).resize((round(w * s), round(h * s)), Image.BILINEAR))


@functools.lru_cache(maxsize=1)
def load_photos() -> tuple[np.ndarray, ...]:
    """All bundled colour photos as (H, W, 3) uint8 arrays, short side SHORT_SIDE px, fixed order."""
    import matplotlib
    import skimage.data
    from sklearn.datasets import load_sample_images

    photos = []
    for name in _SKIMAGE:
        img = getattr(skimage.data, name)()
        if name == "stereo_motorcycle":
            photos += [img[0], img[1]]  # the two views; the third item is a disparity map
        else:
            photos.append(img)
    photos += list(load_sample_images().images)
    hopper = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
    photos.append(load_image(hopper))
    return tuple(_resize_short(np.ascontiguousarray(p[..., :3])) for p in photos)


def random_crop(rng: np.random.Generator, size: int, photos=None) -> np.ndarray:
    """One random size x size crop of a random bundled photo, (size, size, 3) uint8."""
    photos = photos or load_photos()
    p = photos[rng.integers(len(photos))]
    y = rng.integers(0, p.shape[0] - size + 1)
    x = rng.integers(0, p.shape[1] - size + 1)
    return p[y:y + size, x:x + size]
