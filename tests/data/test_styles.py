"""The offline styles and symbol of issue 12 (data/styles.py): deterministic, the right shapes, unlike each
other and the two known domains, held-out splits disjoint, folders in the `digits personalize` layout."""

import hashlib
import re

import numpy as np
import pytest

from difflab.data.mnistm import blend, load_mnist_5k
from difflab.data.styles import (
    STYLES,
    SYMBOL,
    _mnist_pool,
    make_style,
    make_symbol,
    symbol_fonts,
    write_style_set,
    write_symbol_set,
)
from difflab.data.svhn import make_svhn_style, usable_fonts
from difflab.errors import DifflabError
from difflab.io import load_image


@pytest.fixture(scope="module")
def sets():
    """30 images of each new style and of each known domain (made here, small: no 1000-image cache)."""
    out = {s: make_style(s, "train", 3)[0] for s in STYLES}
    out["mnistm"] = blend(load_mnist_5k()[0][::170][:30], np.random.default_rng(0))
    out["svhn"] = make_svhn_style("val", 3)[0]
    return out


@pytest.mark.parametrize("style", STYLES)
def test_deterministic_shapes_and_labels(style):
    x, y = make_style(style, "train", 2, seed=0)
    assert x.shape == (20, 28, 28, 3) and x.dtype == np.uint8
    assert y.dtype == np.int64 and np.array_equal(np.bincount(y, minlength=10), [2] * 10)
    x2, y2 = make_style(style, "train", 2, seed=0)
    assert np.array_equal(x, x2) and np.array_equal(y, y2)
    assert not np.array_equal(make_style(style, "train", 2, seed=1)[0], x)
    assert x.std() > 20  # drawn on, not a flat colour


def test_styles_differ_in_colour(sets):
    """Mean colour over each set: every new style is far from the other and from both known domains; and
    the new styles are each one look (their per-image mean colours vary little, unlike the photo-based
    domains, whose backgrounds change image to image)."""
    means = {k: v.reshape(-1, 3).mean(0) for k, v in sets.items()}
    for s in STYLES:
        for other in means:
            if other != s:
                assert np.linalg.norm(means[s] - means[other]) > 25, (s, other, means[s], means[other])
    spread = {k: v.reshape(len(v), -1, 3).mean(1).std(0).mean() for k, v in sets.items()}
    for s in STYLES:
        assert spread[s] < 0.5 * min(spread["mnistm"], spread["svhn"]), spread
    assert means["blueprint"][2] > means["blueprint"][0] + 60  # blue paper
    lcd = means["lcd"]
    assert lcd[1] > lcd[0] > lcd[2]  # grey-green panel


@pytest.mark.parametrize("style", STYLES)
def test_held_out_split_is_disjoint(style):
    tr, _ = make_style(style, "train", 5)
    va, _ = make_style(style, "val", 5)

    def digests(a):
        return {hashlib.sha1(im.tobytes()).hexdigest() for im in a}

    assert not digests(tr) & digests(va)


def test_blueprint_uses_disjoint_mnist_digits():
    tr, _ = _mnist_pool("train")
    va, ya = _mnist_pool("val")
    assert len(tr) == 4000 and len(va) == 1000 and np.array_equal(np.bincount(ya), [100] * 10)
    train_digests = {hashlib.sha1(d.tobytes()).hexdigest() for d in tr}
    assert not any(hashlib.sha1(d.tobytes()).hexdigest() in train_digests for d in va)


@pytest.mark.parametrize("domain", ["svhn", "mnistm"])
def test_symbol(domain):
    a = make_symbol(domain, "train", 6, seed=0)
    assert a.shape == (6, 28, 28, 3) and a.dtype == np.uint8
    assert np.array_equal(a, make_symbol(domain, "train", 6, seed=0))
    assert not np.array_equal(a, make_symbol(domain, "val", 6, seed=0))
    assert a.std() > 20


def test_symbol_fonts_draw_the_letter():
    fonts = symbol_fonts()
    assert len(fonts) >= 5 and set(fonts) <= set(usable_fonts())


def test_style_folder_layout(tmp_path):
    paths = write_style_set(tmp_path / "lcd", "lcd", per_digit=2, seed=0)
    names = sorted(p.name for p in (tmp_path / "lcd").iterdir())
    assert names == sorted(p.name for p in paths) and len(names) == 20
    digits = [int(re.match(r"^(\d)_(\d{3})\.png$", n).group(1)) for n in names]
    assert np.array_equal(np.bincount(digits), [2] * 10)
    # PNG is lossless: the files hold exactly the recipe's images
    x, y = make_style("lcd", "train", 2, seed=0)
    order = np.argsort(y, kind="stable")
    assert np.array_equal(np.stack([load_image(p) for p in paths]), x[order])


def test_symbol_folder_layout(tmp_path):
    paths = write_symbol_set(tmp_path / "A", "svhn", count=4)
    assert [p.name for p in paths] == [f"{SYMBOL}_{i:03d}.png" for i in range(4)]
    assert load_image(paths[0]).shape == (28, 28, 3)


def test_bad_names():
    with pytest.raises(DifflabError, match="unknown style"):
        make_style("neon", "train", 1)
    with pytest.raises(DifflabError, match="unknown split"):
        make_style("lcd", "test", 1)
    with pytest.raises(DifflabError, match="unknown domain"):
        make_symbol("mnist", "train", 1)
