"""An SVHN-style domain rendered from TrueType fonts (the "SynNumbers" idea, Ganin & Lempitsky 2015).

A house-number crop: the labelled digit in the centre, parts of neighbour digits left and right,
varied colours and contrast, size, slight rotation/shear, blur and noise, on a photo-textured plate.
Fonts: matplotlib's own plus any under /usr/share/fonts, each validated by rendering 0-9 (some fonts
claim digits but draw placeholders or symbols; see docs/machine-notes.md).
"""

from __future__ import annotations

import functools
import glob
import hashlib
import os

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from difflab.data.photos import load_photos, random_crop
from difflab.viz import dejavu_sans_path

CANVAS = 64  # render at 64 px, then downsample to 28: anti-aliased strokes like a real photo


def _font_files() -> list[str]:
    """matplotlib's fonts first, then the system's, each group sorted. The order decides which copy of a
    face shipped twice survives deduplication, so it must not depend on where the venv lives (sorting
    all paths together put /tmp/x/.venv before /usr/share/fonts but /work/.venv after it)."""
    import matplotlib

    ours = sorted(glob.glob(os.path.join(matplotlib.get_data_path(), "fonts", "ttf", "*.ttf")))
    system = set()
    for ext in ("ttf", "otf", "TTF", "OTF"):
        system.update(glob.glob(f"/usr/share/fonts/**/*.{ext}", recursive=True))
    return ours + sorted(system - set(ours))


def _digit_renders(path: str) -> np.ndarray | None:
    """The ten digits drawn in this font, each cropped to its ink and resized: (10, 16, 16) float."""
    try:
        font = ImageFont.truetype(path, 40)
    except OSError:
        return None
    renders = []
    for d in "0123456789":
        img = Image.new("L", (64, 64), 0)
        ImageDraw.Draw(img).text((32, 32), d, fill=255, font=font, anchor="mm")
        box = img.getbbox()
        if box is None:
            return None  # blank glyph
        renders.append(np.asarray(img.crop(box).resize((16, 16), Image.BILINEAR), dtype=np.float32))
    return np.stack(renders)


def _looks_like_digits(r: np.ndarray, ref: np.ndarray) -> bool:
    """True if >= 8 of the 10 renders are nearest (normalised correlation) to the right reference digit.
    Rejects fonts that draw symbols or placeholder boxes for 0-9 (cmex10, cmsy10, LastResort)."""
    def norm(x):
        x = x.reshape(10, -1) - x.reshape(10, -1).mean(1, keepdims=True)
        return x / (np.linalg.norm(x, axis=1, keepdims=True) + 1e-6)

    return int((np.argmax(norm(r) @ norm(ref).T, axis=1) == np.arange(10)).sum()) >= 8


@functools.lru_cache(maxsize=1)
def usable_fonts() -> tuple[str, ...]:
    """Font files whose ten digit renders are all non-blank and pairwise different; deduplicated by
    the look of their digits (the same face often ships twice, e.g. DejaVu in matplotlib and Debian)."""
    ref = _digit_renders(dejavu_sans_path())
    seen, fonts = set(), []
    for path in _font_files():
        r = _digit_renders(path)
        if r is None or not _looks_like_digits(r, ref):
            continue
        key = hashlib.sha1(r.round().astype(np.uint8).tobytes()).hexdigest()
        if key not in seen:
            seen.add(key)
            fonts.append(path)
    return tuple(fonts)


def fonts_fingerprint() -> str:
    """Short hash of the font set, so cached datasets are rebuilt when the fonts change."""
    return hashlib.sha1("\n".join(os.path.basename(f) for f in usable_fonts()).encode()).hexdigest()[:8]


def _contrasting_colours(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Background and foreground RGB colours whose luminances differ by at least 70 (of 255)."""
    while True:
        bg, fg = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
        lum = np.array([0.299, 0.587, 0.114])
        if abs(bg @ lum - fg @ lum) >= 70:
            return bg, fg


def render_one(label: int, rng: np.random.Generator, fonts: tuple[str, ...], photos) -> np.ndarray:
    """One SVHN-style crop of digit `label`: (28, 28, 3) uint8."""
    bg_col, fg_col = _contrasting_colours(rng)
    # plate: a photo crop (texture, lighting) tinted towards the plate colour
    tex = Image.fromarray(random_crop(rng, int(rng.integers(48, 160)), photos)).resize((CANVAS, CANVAS))
    tint = rng.uniform(0.45, 0.85)
    plate = (1 - tint) * np.asarray(tex, dtype=np.float32) + tint * bg_col
    img = Image.fromarray(plate.clip(0, 255).astype(np.uint8))

    font = ImageFont.truetype(fonts[rng.integers(len(fonts))], int(rng.integers(38, 54)))
    draw = ImageDraw.Draw(img)
    cx, cy = CANVAS / 2 + rng.normal(0, 1.5), CANVAS / 2 + rng.normal(0, 1.5)
    fill = tuple(int(c) for c in fg_col)
    draw.text((cx, cy), str(label), fill=fill, font=font, anchor="mm")
    # neighbours, partly outside the crop as in SVHN's cropped-digit format
    w = font.getbbox(str(label))[2] - font.getbbox(str(label))[0]
    gap = w * rng.uniform(0.95, 1.35)
    for side in (-1, 1):
        if rng.random() < 0.7:
            draw.text((cx + side * gap, cy), str(rng.integers(10)), fill=fill, font=font, anchor="mm")

    # slight rotation and shear (affine about the centre)
    ang, sh = np.deg2rad(rng.uniform(-8, 8)), rng.uniform(-0.2, 0.2)
    c, s = np.cos(ang), np.sin(ang)
    a, b, d, e = c, -s + sh, s, c
    cx0 = cy0 = CANVAS / 2
    coeffs = (a, b, cx0 - a * cx0 - b * cy0, d, e, cy0 - d * cx0 - e * cy0)
    fill_bg = tuple(int(v) for v in plate[0, 0])
    img = img.transform(img.size, Image.AFFINE, coeffs, resample=Image.BILINEAR, fillcolor=fill_bg)
    img = img.filter(ImageFilter.GaussianBlur(rng.uniform(0.0, 1.6)))
    out = np.asarray(img.resize((28, 28), Image.BILINEAR), dtype=np.float32)
    out = out * rng.uniform(0.7, 1.15) + rng.uniform(-20, 20)  # exposure / contrast
    out += rng.normal(0, rng.uniform(0, 8), out.shape)  # sensor noise
    return out.clip(0, 255).astype(np.uint8)


def make_svhn_style(split: str, n_per_class: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(images (10 * n_per_class, 28, 28, 3) uint8, labels) for split 'train' or 'val' (other seeds)."""
    fonts, photos = usable_fonts(), load_photos()
    rng = np.random.default_rng([seed, 2 if split == "train" else 3])
    labels = rng.permutation(np.repeat(np.arange(10), n_per_class))
    images = np.stack([render_one(int(y), rng, fonts, photos) for y in labels])
    return images, labels.astype(np.int64)
