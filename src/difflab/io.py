"""Checkpoints (safetensors + JSON metadata), atomic writes, readers of user files, image save/load.

Everything that writes a file goes through `atomic_path`, so a crash or a full disk never leaves a
half-written checkpoint or image behind: we write to a temp name in the same folder and rename.
Everything that reads a user's file turns every way it can be broken into one DifflabError line naming
the file (tests/fuzz/ feeds them random bytes). Output folders live in `difflab.outdir` (re-exported here).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open, save_file

from difflab.errors import DifflabError
from difflab.outdir import current_umask, inplace_output_dir, staged_output_dir

__all__ = ["atomic_path", "existing_file", "save_checkpoint", "load_checkpoint", "tensor_digest", "check_finite",
           "check_float_weights", "load_torch_file", "decode_utf8", "read_json", "to_uint8", "save_png", "open_image",
           "load_image", "IMAGE_SUFFIXES", "is_image_file", "image_files", "staged_output_dir", "inplace_output_dir"]

DIGEST_KEY = "difflab_sha256"  # safetensors metadata key of the tensor digest (beside "difflab": meta JSON)


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
    try:
        yield tmp
        # after the block: mkstemp makes 0600, and writers like safetensors replace the file with their
        # own 0600 temp file, so only a chmod here gives the final file the umask's permissions
        os.chmod(tmp, 0o666 & ~current_umask())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


# ------------------------------------------------------------------------------------------ checkpoints
def tensor_digest(tensors: Mapping[str, torch.Tensor]) -> str:
    """sha256 over every tensor's name, dtype, shape and bytes, in name order (the order in the file is
    not ours to rely on). The JSON header per tensor makes the byte stream unambiguous."""
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        h.update(json.dumps([name, str(t.dtype), list(t.shape)]).encode() + b"\n")
        h.update(t.reshape(-1).view(torch.uint8).numpy())
    return h.hexdigest()


def save_checkpoint(path, tensors: dict[str, torch.Tensor], meta: dict) -> None:
    """Save tensors + a JSON-serialisable `meta` dict (stored as safetensors metadata) atomically, with a
    digest of the tensor data that `load_checkpoint` verifies."""
    tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={"difflab": json.dumps(meta), DIGEST_KEY: tensor_digest(tensors)})


def load_checkpoint(path) -> tuple[dict[str, torch.Tensor], dict]:
    """Load tensors and the `meta` dict written by `save_checkpoint`.

    Refused with one line naming the file: unreadable files, a digest that does not match the data
    (files without one, like the shipped assets written before digests existed, still load) and NaN/inf
    in any float tensor (a model with them only ever produces black images).
    """
    path = existing_file(path, "checkpoint")
    try:
        with safe_open(str(path), "pt") as f:
            header = f.metadata() or {}
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError, TypeError) as e:
        raise DifflabError(f"{path}: not a readable safetensors checkpoint ({_first_line(e)})") from None
    raw, digest = header.get("difflab"), header.get(DIGEST_KEY)
    if digest is not None and digest != tensor_digest(tensors):
        raise DifflabError(f"{path}: checkpoint is corrupt (its tensor data does not match the digest stored "
                           "when it was saved)")
    try:
        meta = json.loads(raw) if raw else {}
    except (json.JSONDecodeError, RecursionError) as e:
        raise DifflabError(f"{path}: checkpoint metadata is not valid JSON ({_first_line(e)})") from None
    if not isinstance(meta, dict):
        raise DifflabError(f"{path}: checkpoint metadata is a JSON {type(meta).__name__}, not an object")
    check_finite(tensors, path)
    return tensors, meta


def check_finite(tensors: Mapping[str, torch.Tensor], path, names=None) -> None:
    """Refuse NaN/inf in any float tensor (only those in `names`, when given), naming file and tensor."""
    for name, t in tensors.items():
        if (names is None or name in names) and t.is_floating_point() and not bool(torch.isfinite(t).all()):
            bad = int((~torch.isfinite(t)).sum())
            raise DifflabError(f"{path}: tensor {name!r} holds {bad} NaN/inf value(s); refusing weights that "
                               "can only produce garbage")


def check_float_weights(tensors: Mapping[str, torch.Tensor], path,
                        expected: Mapping[str, torch.Tensor] | None = None) -> None:
    """Refuse integer/bool tensors where float weights are expected, instead of letting load_state_dict
    cast them silently (weights rounded to integers give garbage images without any error).

    `expected`: the model's own state dict; only its float entries are checked, so integer buffers
    (BatchNorm's num_batches_tracked) stay allowed. Without it every tensor must be float.
    """
    for name, t in tensors.items():
        want_float = expected is None or (name in expected and expected[name].is_floating_point())
        if want_float and not t.is_floating_point():
            raise DifflabError(f"{path}: tensor {name!r} has dtype {str(t.dtype).replace('torch.', '')}, "
                               "expected float weights")


# ---------------------------------------------------------------------------------- readers of user files
def existing_file(path, what: str) -> Path:
    """`path` as a Path if it is a file, else one line: "PATH: <what> not found" (a folder counts as missing)."""
    path = Path(path)
    if not path.is_file():
        raise DifflabError(f"{path}: {what} not found")
    return path


def _first_line(e: BaseException) -> str:
    lines = [s.strip() for s in str(e).splitlines() if s.strip()]
    return lines[0] if lines else type(e).__name__


def _weights_only_reason(message: str) -> str:
    """The one informative line of torch's weights_only refusal (which otherwise spans 3-8 lines and
    suggests weights_only=False, i.e. running the file's code)."""
    skip = ("weights only load failed", "please file an issue", "check the documentation")
    for line in message.splitlines():
        line = line.strip()
        if line and not line.lower().startswith(skip):
            return line.rstrip(".")
    return "it holds Python objects other than tensors"


def load_torch_file(path, what: str = "torch .pt file"):
    """torch.load(path, weights_only=True) with every failure as one line naming the file.

    weights_only: a data file must never run code when read. Its refusal of a pickle with other Python
    objects (e.g. a malicious `os.system` call) is reported as such, condensed to one line.
    """
    import pickle

    path = existing_file(path, what)
    try:
        with open(path, "rb") as f:
            head = f.read(4)
    except OSError as e:
        raise DifflabError(f"{path}: cannot read the {what} ({e.strerror})") from None
    if not (head.startswith(b"PK\x03\x04") or head[:1] == b"\x80"):  # torch.save: zip, or legacy pickle
        raise DifflabError(f"{path}: not a readable {what} (not written by torch.save: it starts with {head!r})")
    try:
        with warnings.catch_warnings():  # e.g. "Detected pickle protocol 4": noise, not a user problem
            warnings.simplefilter("ignore")
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        if "weights only load failed" in str(e).lower():
            raise DifflabError(f"{path}: refused: the file holds Python objects other than tensors "
                               f"({_weights_only_reason(str(e))}); difflab never runs code from a data file"
                               ) from None
        raise DifflabError(f"{path}: not a readable {what} ({_first_line(e)})") from None
    except MemoryError:
        raise
    except Exception as e:  # torch's unpickler raises KeyError, EOFError, RuntimeError, ... on junk bytes
        raise DifflabError(f"{path}: not a readable {what} ({type(e).__name__}: {_first_line(e)})") from None


def decode_utf8(raw: bytes, path, what: str) -> str:
    """UTF-8 bytes -> text (a leading BOM, as Windows tools write, is dropped); other encodings are refused
    with the line of the first bad byte, since guessing (Latin-1?) would silently garble names."""
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        raise DifflabError(f"{path}:{line}: {what} is not UTF-8 text (byte 0x{raw[e.start]:02x}); save it as UTF-8"
                           ) from None


class _DuplicateKey(Exception):
    pass


def _unique_object(pairs: list[tuple[str, object]]) -> dict:
    seen: dict = {}
    for k, v in pairs:
        if k in seen:
            raise _DuplicateKey(k)
        seen[k] = v
    return seen


def read_json(path, what: str = "JSON file", unique_keys: bool = True):
    """Parse a UTF-8 JSON file (a BOM is allowed); any failure -> one line naming the file.

    unique_keys: refuse an object with the same key twice (plain json keeps the last one silently).
    """
    path = existing_file(path, what)
    try:
        text = decode_utf8(path.read_bytes(), path, what)
    except OSError as e:
        raise DifflabError(f"{path}: cannot read the {what} ({e.strerror})") from None
    try:
        return json.loads(text, object_pairs_hook=_unique_object if unique_keys else None)
    except json.JSONDecodeError as e:
        raise DifflabError(f"{path}: {what} is not valid JSON ({e.msg} at line {e.lineno} column {e.colno})"
                           ) from None
    except _DuplicateKey as e:
        raise DifflabError(f"{path}: key {e.args[0]!r} appears twice in the {what} (each key must be "
                           "unique)") from None
    except RecursionError:
        raise DifflabError(f"{path}: {what} is nested too deeply") from None


# --------------------------------------------------------------------------------------------- images
# What every reader of an image folder takes as an image (compared with the suffix lower-cased): the
# formats PIL decodes without extra libraries. GIF and TIFF decode to their first frame.
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")


def is_image_file(path) -> bool:
    """A regular, visible file with an image suffix. Hidden files are never images: macOS copies leave
    `._name.png` resource forks beside each image, which would fail to decode."""
    path = Path(path)
    return path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".") and path.is_file()


def image_files(folder) -> list[Path]:
    """The image files directly in `folder` (see `is_image_file`), sorted by name."""
    return sorted(p for p in Path(folder).iterdir() if is_image_file(p))


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


def open_image(path, mode: str = "RGB") -> Image.Image:
    """Decode a whole image file now (PIL is lazy) -> PIL image in `mode`; one line naming a bad file."""
    path = existing_file(path, "image")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)  # > 89 Mpx: likely a bomb
            with Image.open(path) as im:
                return im.convert(mode)
    except (Image.DecompressionBombWarning, Image.DecompressionBombError) as e:
        raise DifflabError(f"{path}: image too large to decode safely ({_first_line(e)})") from None
    except MemoryError:
        raise
    except Exception as e:  # PIL raises OSError, SyntaxError, ValueError, struct.error, ... on bad bytes
        raise DifflabError(f"{path}: corrupt or unreadable image ({type(e).__name__}: {_first_line(e)})"
                           ) from None


def load_image(path, size: int | None = None, mode: str = "RGB") -> np.ndarray:
    """Read an image file -> (H, W, 3) uint8 ((H, W) for mode "L"); resized to size x size if given."""
    im = open_image(path, mode)
    if size is not None and im.size != (size, size):
        im = im.resize((size, size), Image.BILINEAR)
    return np.asarray(im).copy()
