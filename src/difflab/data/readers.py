"""Readers for the real digit datasets, when a user has them.

- Folder layout (the common course layout): ROOT/{mnistm,svhn}/data/*.png with ROOT/{domain}/train.csv
  and val.csv, header `image_name,label`.
- SVHN's cropped-digit `train_32x32.mat` / `test_32x32.mat` (X: (32, 32, 3, N) uint8, y: (N, 1), 10 = 0).
Images come back 28x28 RGB uint8. Non-28x28 images are RESIZED (bilinear) with one warning per call,
since real SVHN is 32x32; refusing them would make the real data unusable.
"""

from __future__ import annotations

import csv
import io
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np
from PIL import Image

from difflab.errors import DifflabError
from difflab.io import decode_utf8, existing_file, load_image


def _check_label(raw: str, where: str) -> int:
    try:
        y = int(raw)
    except ValueError:
        raise DifflabError(f"{where}: label {raw!r} is not an integer") from None
    if not 0 <= y <= 9:
        raise DifflabError(f"{where}: label {y} is outside 0-9")
    return y


def _read_csv(path: Path) -> list[list[str]]:
    """All rows of a UTF-8 CSV (Excel's BOM allowed); a wrong encoding or broken quoting -> one line."""
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise DifflabError(f"{path}: cannot read ({e.strerror})") from None
    text = decode_utf8(raw, path, "split file")
    try:
        return list(csv.reader(io.StringIO(text, newline="")))
    except csv.Error as e:
        raise DifflabError(f"{path}: not a readable CSV file ({e})") from None


def read_csv_split(domain_dir, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Read DOMAIN_DIR/{split}.csv + DOMAIN_DIR/data/*.png -> (N, 28, 28, 3) uint8, (N,) int64."""
    domain_dir = Path(domain_dir)
    csv_path = domain_dir / f"{split}.csv"
    if not domain_dir.is_dir():
        raise DifflabError(f"{domain_dir}: data folder not found")
    if not csv_path.is_file():
        raise DifflabError(f"{csv_path}: split file not found (expected header image_name,label)")
    rows = _read_csv(csv_path)
    if not rows or [c.strip() for c in rows[0][:2]] != ["image_name", "label"]:
        raise DifflabError(f"{csv_path}: header must be 'image_name,label'")
    rows = [r for r in rows[1:] if r]
    if not rows:
        raise DifflabError(f"{csv_path}: no images listed")
    images, labels, resized = [], [], 0
    for line, row in enumerate(rows, start=2):
        if len(row) < 2:
            raise DifflabError(f"{csv_path}:{line}: expected 'image_name,label'")
        img_path = domain_dir / "data" / row[0].strip()
        if not img_path.is_file():
            raise DifflabError(f"{csv_path}:{line}: image {img_path} not found")
        labels.append(_check_label(row[1].strip(), f"{csv_path}:{line}"))
        img = load_image(img_path)
        if img.shape[:2] != (28, 28):
            resized += 1
            img = np.asarray(Image.fromarray(img).resize((28, 28), Image.BILINEAR))
        images.append(img)
    if resized:
        warnings.warn(f"{csv_path}: resized {resized} image(s) that were not 28x28 to 28x28", stacklevel=2)
    return np.stack(images), np.asarray(labels, dtype=np.int64)


# Runs in a child process: scipy's .mat parser (compiled code) can crash with a segmentation fault on a
# corrupt file (found by tests/fuzz), which would kill difflab without a word. X and y come back as .npy.
_LOADMAT_CHILD = """
import sys
import numpy as np
from scipy.io import loadmat
try:
    mat = loadmat(sys.argv[1], variable_names=["X", "y"])
    for key in ("X", "y"):
        np.save(f"{sys.argv[2]}/{key}.npy", mat[key], allow_pickle=False)
except Exception as e:
    sys.exit(" ".join(f"{type(e).__name__}: {e}".split())[:300])
"""


def _loadmat_isolated(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(X, y) of a .mat file, parsed in a child process; every failure (a crash too) is one line."""
    with tempfile.TemporaryDirectory(prefix="difflab-mat-") as tmp:
        r = subprocess.run([sys.executable, "-c", _LOADMAT_CHILD, str(path), tmp], capture_output=True, text=True)
        if r.returncode < 0:
            raise DifflabError(f"{path}: not a readable SVHN .mat file (the parser crashed with signal "
                               f"{-r.returncode}: the file is corrupt)")
        if r.returncode:
            reason = (r.stderr.strip().splitlines() or ["unknown error"])[-1]
            raise DifflabError(f"{path}: not a readable SVHN .mat file ({reason})")
        try:  # allow_pickle=False: object arrays (cells, structs) are not pixels or labels
            return np.load(f"{tmp}/X.npy", allow_pickle=False), np.load(f"{tmp}/y.npy", allow_pickle=False)
        except (OSError, ValueError) as e:
            raise DifflabError(f"{path}: not a readable SVHN .mat file ({e})") from None


def read_svhn_mat(path) -> tuple[np.ndarray, np.ndarray]:
    """Read SVHN's *_32x32.mat -> images (N, 28, 28, 3) uint8 (resized from 32x32), labels (N,) 0-9."""
    path = existing_file(path, "SVHN .mat file")
    X, y = _loadmat_isolated(path)
    if not isinstance(y, np.ndarray) or y.dtype.kind not in "iuf" or y.size == 0:
        raise DifflabError(f"{path}: y must be a non-empty array of integer labels")
    if y.dtype.kind == "f" and not np.array_equal(y, np.round(y)):  # NaN fails this too
        raise DifflabError(f"{path}: y holds labels that are not whole numbers")
    y = y.reshape(-1).astype(np.int64)
    if not isinstance(X, np.ndarray) or X.ndim != 4 or X.shape[:3] != (32, 32, 3) or X.shape[3] != len(y):
        raise DifflabError(f"{path}: expected X of shape (32, 32, 3, N) and y of shape (N, 1)")
    if X.dtype != np.uint8:  # other types would be cast (wrapping or truncating pixels) without a word
        raise DifflabError(f"{path}: X has dtype {X.dtype}, expected uint8 pixels")
    y[y == 10] = 0  # SVHN stores the digit 0 as label 10
    bad = y[(y < 0) | (y > 9)]
    if len(bad):
        raise DifflabError(f"{path}: label {int(bad[0])} is outside 0-9")
    X = np.moveaxis(X, 3, 0)
    images = np.stack([np.asarray(Image.fromarray(x).resize((28, 28), Image.BILINEAR)) for x in X])
    return images, y
