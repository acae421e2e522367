"""Image grids with labels, the labels' font, and atomic saving of images and figures, shared by every job."""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from difflab.io import atomic_path


def dejavu_sans_path() -> str:
    """DejaVu Sans, as shipped with matplotlib (a core dependency): a font every install has."""
    import matplotlib

    return os.path.join(matplotlib.get_data_path(), "fonts", "ttf", "DejaVuSans.ttf")


def font(size: int) -> ImageFont.FreeTypeFont:
    """DejaVu Sans at `size` px, so labels look the same on every machine; Pillow's own default font, at
    the same size, is the fallback."""
    try:
        return ImageFont.truetype(dejavu_sans_path(), size)
    except (ImportError, OSError):
        return ImageFont.load_default(size=size)


def grid(images: np.ndarray | Sequence[np.ndarray], ncols: int, scale: int = 1, pad: int = 2,
         row_labels: Sequence[str] | None = None, col_labels: Sequence[str] | None = None,
         title: str | None = None, background: int = 255) -> Image.Image:
    """Tile (N, H, W, 3) uint8 images row-major into a grid with optional row/column labels and title.

    Each tile is upscaled by `scale` (nearest, so pixels stay visible).
    """
    images = [np.asarray(im) for im in images]
    h, w = images[0].shape[:2]
    th, tw = h * scale, w * scale
    nrows = (len(images) + ncols - 1) // ncols
    label_font = font(max(10, min(16, th // 3)))
    left = 0
    if row_labels:
        left = max(int(label_font.getlength(s)) for s in row_labels) + 8
    top = (label_font.size + 8) if col_labels else 0
    head = (label_font.size + 10) if title else 0
    W = left + ncols * (tw + pad) + pad
    H = head + top + nrows * (th + pad) + pad
    canvas = Image.new("RGB", (max(W, int(label_font.getlength(title or "")) + 10), H), (background,) * 3)
    draw = ImageDraw.Draw(canvas)
    if title:
        draw.text((5, 4), title, fill=(0, 0, 0), font=label_font)
    for j, s in enumerate(col_labels or []):
        x = left + pad + j * (tw + pad) + tw // 2
        draw.text((x, head + top // 2), s, fill=(0, 0, 0), font=label_font, anchor="mm")
    for i, s in enumerate(row_labels or []):
        draw.text((left - 4, head + top + pad + i * (th + pad) + th // 2), s, fill=(0, 0, 0), font=label_font,
                  anchor="rm")
    for k, im in enumerate(images):
        r, c = divmod(k, ncols)
        tile = Image.fromarray(im if im.shape[-1] == 3 else im[..., 0])
        if scale != 1:
            tile = tile.resize((tw, th), Image.NEAREST)
        canvas.paste(tile.convert("RGB"), (left + pad + c * (tw + pad), head + top + pad + r * (th + pad)))
    return canvas


def save_image(image: Image.Image, path) -> None:
    """Save a PIL image atomically (format from the suffix)."""
    with atomic_path(path) as tmp:
        image.save(tmp, format=(str(path).rsplit(".", 1)[-1].upper().replace("JPG", "JPEG")))


def save_figure(fig, path, title: str | None = None) -> None:
    """Title, lay out and write a matplotlib figure as PNG atomically, then free it (pyplot keeps every
    open figure alive otherwise)."""
    import matplotlib.pyplot as plt

    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
