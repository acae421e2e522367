"""Checkpoints (safetensors + JSON metadata), atomic writes, image save/load.

Everything that writes a file goes through `atomic_path`, so a crash or a full disk never leaves a
half-written checkpoint or image behind: we write to a temp name in the same folder and rename.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open, save_file

from difflab.errors import DifflabError


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temp path beside `path`; rename it onto `path` only if the block succeeds."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as e:
        raise DifflabError(f"{path.parent}: cannot write here ({e.strerror})") from None
    os.close(fd)
    tmp = Path(tmp)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the final file normal permissions
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def save_checkpoint(path, tensors: dict[str, torch.Tensor], meta: dict) -> None:
    """Save tensors + a JSON-serialisable `meta` dict (stored as safetensors metadata) atomically."""
    tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={"difflab": json.dumps(meta)})


def load_checkpoint(path) -> tuple[dict[str, torch.Tensor], dict]:
    """Load tensors and the `meta` dict written by `save_checkpoint`."""
    path = Path(path)
    if not path.is_file():
        raise DifflabError(f"{path}: checkpoint not found")
    try:
        with safe_open(str(path), "pt") as f:
            raw = (f.metadata() or {}).get("difflab")
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise DifflabError(f"{path}: not a readable safetensors checkpoint ({e})") from None
    try:
        meta = json.loads(raw) if raw else {}
    except json.JSONDecodeError as e:
        raise DifflabError(f"{path}: checkpoint metadata is not valid JSON ({e})") from None
    return tensors, meta


def to_uint8(images: torch.Tensor, mode: str = "clamp") -> np.ndarray:
    """(N, C, H, W) in [-1, 1] -> (N, H, W, C) uint8.

    mode "clamp": (x + 1) / 2 clipped to [0, 1]; "minmax": each image scaled to its own min..max.
    """
    x = images.detach().float().cpu()
    if mode == "clamp":
        x = ((x + 1) / 2).clamp(0, 1)
    elif mode == "minmax":
        lo = x.amin(dim=(1, 2, 3), keepdim=True)
        hi = x.amax(dim=(1, 2, 3), keepdim=True)
        x = (x - lo) / (hi - lo).clamp_min(1e-12)
    else:
        raise DifflabError(f"unknown pixel mapping {mode!r} (use clamp or minmax)")
    return (x * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()


def save_png(path, image_hwc: np.ndarray) -> None:
    """Save one (H, W, 3|1) uint8 array as PNG, atomically."""
    arr = image_hwc[..., 0] if image_hwc.shape[-1] == 1 else image_hwc
    with atomic_path(path) as tmp:
        Image.fromarray(arr).save(tmp, format="PNG")


def load_image(path, size: int | None = None, mode: str = "RGB") -> np.ndarray:
    """Read an image file -> (H, W, 3) uint8; resize to size x size if given. Clear error if corrupt."""
    path = Path(path)
    if not path.is_file():
        raise DifflabError(f"{path}: image not found")
    try:
        with Image.open(path) as im:
            im = im.convert(mode)
            if size is not None and im.size != (size, size):
                im = im.resize((size, size), Image.BILINEAR)
            return np.asarray(im).copy()
    except (UnidentifiedImageError, OSError, SyntaxError) as e:
        raise DifflabError(f"{path}: corrupt or unreadable image ({e})") from None


def prepare_output_dir(path, overwrite: bool) -> Path:
    """Create an output folder; refuse a non-empty one unless overwrite (then empty it first)."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise DifflabError(f"{path}: exists and is not a folder")
    if path.is_dir() and any(path.iterdir()):
        if not overwrite:
            raise DifflabError(f"{path}: output folder is not empty (pass --overwrite to replace it)")
        shutil.rmtree(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".write_test"
        probe.touch()
        probe.unlink()
    except OSError as e:
        raise DifflabError(f"{path}: output folder is not writable ({e.strerror})") from None
    return path
