"""Starting-noise files: a folder of `00.pt`, `01.pt`, ... each a float tensor (1, C, H, W) or (C, H, W).

Every check a user's file can fail gives one line naming the file, because a wrong noise file otherwise
shows up only as a garbage image (or a shape error deep inside the UNet).
"""

from __future__ import annotations

from pathlib import Path

import torch

from difflab.checks import check_count, check_seed
from difflab.errors import DifflabError
from difflab.io import atomic_path, load_torch_file


def natural_key(stem: str) -> tuple:
    """Sort '2' before '10' when stems are numbers; plain text order otherwise."""
    return (0, int(stem), stem) if stem.isdigit() else (1, 0, stem)


def load_noise_file(path, expect: tuple[int, int, int] | None = None) -> torch.Tensor:
    """Read one noise tensor -> (C, H, W) float32, finite. `expect` = (C, H, W) the model needs."""
    path = Path(path)
    if not path.is_file():
        raise DifflabError(f"{path}: noise file not found")
    x = load_torch_file(path, "torch .pt file")
    if not isinstance(x, torch.Tensor):
        raise DifflabError(f"{path}: contains a {type(x).__name__}, not a tensor")
    if not x.is_floating_point():
        raise DifflabError(f"{path}: dtype {x.dtype}, expected a float tensor")
    if x.dim() == 4 and x.shape[0] == 1:
        x = x[0]
    if x.dim() != 3:
        raise DifflabError(f"{path}: shape {tuple(x.shape)}, expected (1, C, H, W) or (C, H, W)")
    if expect is not None and tuple(x.shape) != tuple(expect):
        raise DifflabError(f"{path}: shape {tuple(x.shape)}, but the model takes {tuple(expect)}")
    x = x.float()
    bad = (~torch.isfinite(x)).sum().item()
    if bad:
        raise DifflabError(f"{path}: contains {bad} NaN/inf values")
    return x.contiguous()


def load_noise_dir(folder, expect: tuple[int, int, int] | None = None) -> tuple[list[str], torch.Tensor]:
    """Read every `*.pt` in a folder -> (stems in natural order, noise (N, C, H, W) float32)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DifflabError(f"{folder}: noise folder not found")
    files = sorted(folder.glob("*.pt"), key=lambda p: natural_key(p.stem))
    if not files:
        raise DifflabError(f"{folder}: no .pt noise files in this folder")
    tensors = []
    for f in files:
        x = load_noise_file(f, expect)
        if tensors and x.shape != tensors[0].shape:
            raise DifflabError(f"{f}: shape {tuple(x.shape)} differs from {files[0].name}'s "
                               f"{tuple(tensors[0].shape)}")
        tensors.append(x)
    return [f.stem for f in files], torch.stack(tensors)


def save_noise(path, x: torch.Tensor) -> None:
    """Save one (C, H, W) tensor as (1, C, H, W) float32, the layout the loaders accept, atomically."""
    with atomic_path(path) as tmp:
        torch.save(x.detach().float().cpu().reshape(1, *x.shape[-3:]).clone(), tmp)


def stem_names(n: int) -> list[str]:
    """'00', '01', ... (at least two digits, more if n > 100)."""
    width = max(2, len(str(n - 1)))
    return [str(i).zfill(width) for i in range(n)]


def check_shape(shape) -> None:
    """--shape C H W: three sizes >= 1 (a size too big for memory is the CLI's one-line memory error)."""
    if len(shape) != 3:
        raise DifflabError(f"--shape must be three positive sizes C H W, got {tuple(shape)}")
    for size in shape:
        check_count("shape", size)


def make_noise(n: int, shape: tuple[int, int, int], seed: int) -> torch.Tensor:
    """n standard-normal tensors (n, C, H, W) from one generator seeded with `seed`."""
    check_count("count", n)
    check_shape(shape)
    check_seed("seed", seed)
    return torch.randn((n, *shape), generator=torch.Generator().manual_seed(seed))
