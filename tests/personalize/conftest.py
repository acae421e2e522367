"""Fixtures for the textual-inversion tests: one tiny random SD folder (real CLIP tokenizer), photos.

The SD folder is written once per session with `save_pretrained` and every test loads it back through
our loader (`load_sd`), so each test gets a fresh pipeline it may modify (add tokens, train rows).
"""

import numpy as np
import pytest
from PIL import Image


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    """Every textual-inversion test runs on one thread (tests/conftest.py's `one_thread`)."""


@pytest.fixture(scope="session")
def tiny_sd_dir(tmp_path_factory):
    from difflab.personalize.tiny import save_tiny_sd

    return save_tiny_sd(tmp_path_factory.mktemp("tiny_sd"))


@pytest.fixture
def pipe(tiny_sd_dir):
    from difflab.models.sd import load_sd

    return load_sd(tiny_sd_dir, device="cpu")


@pytest.fixture(scope="session")
def photos_dir(tmp_path_factory):
    """Three in-wheel colour photos of different sizes (one not square)."""
    from skimage import data

    folder = tmp_path_factory.mktemp("photos")
    for name in ("chelsea", "coffee", "astronaut"):
        Image.fromarray(getattr(data, name)()).save(folder / f"{name}.png")
    return folder


@pytest.fixture(scope="session")
def tiny_clip_dir(tmp_path_factory):
    from difflab.clip.tiny import save_tiny_clip

    return save_tiny_clip(tmp_path_factory.mktemp("tiny_clip"))


@pytest.fixture
def rng():
    return np.random.default_rng(0)
