"""data/augment.py: whole-pixel shifts of a few training images (personalize --augment-shift)."""

import pytest
import torch

from difflab.data.augment import random_shift


def reference_shift(img: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """One image (C, H, W) moved by (dy, dx) pixels, edges repeated: by explicit index clamping."""
    _, h, w = img.shape
    rows = (torch.arange(h) - dy).clamp(0, h - 1)
    cols = (torch.arange(w) - dx).clamp(0, w - 1)
    return img[:, rows][:, :, cols]


def test_each_image_is_its_own_whole_pixel_shift_with_edges_repeated():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(16, 3, 9, 7, generator=g) * 2 - 1
    out = random_shift(x, 2, torch.Generator().manual_seed(1))
    assert out.shape == x.shape and out.dtype == x.dtype
    offsets = set()
    for img, moved in zip(x, out):
        # exactly one of the 25 shifts reproduces each output: no resampling, no blur, range unchanged
        hits = [(dy, dx) for dy in range(-2, 3) for dx in range(-2, 3)
                if torch.equal(reference_shift(img, dy, dx), moved)]
        assert len(hits) == 1
        offsets.add(hits[0])
    assert len(offsets) > 4  # drawn per image, not once per batch


def test_same_generator_same_shifts_and_zero_is_identity():
    x = torch.rand(8, 3, 28, 28)
    a = random_shift(x, 3, torch.Generator().manual_seed(5))
    b = random_shift(x, 3, torch.Generator().manual_seed(5))
    c = random_shift(x, 3, torch.Generator().manual_seed(6))
    assert torch.equal(a, b) and not torch.equal(a, c)
    g = torch.Generator().manual_seed(0)
    state = g.get_state()
    assert random_shift(x, 0, g) is x and torch.equal(g.get_state(), state)  # off: draws nothing
    with pytest.raises(ValueError, match="max_px"):
        random_shift(x, -1, g)
