import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from difflab.data import load_domain, to_model_range
from difflab.data.mnistm import blend, load_mnist_5k, split_indices
from difflab.data.svhn import make_svhn_style, usable_fonts
from difflab.errors import DifflabError


def test_mnist_5k_is_real_and_balanced():
    images, labels = load_mnist_5k()
    assert images.shape == (5000, 28, 28) and images.dtype == np.uint8
    assert np.bincount(labels).tolist() == [500] * 10


def test_split_is_stratified_and_disjoint():
    _, labels = load_mnist_5k()
    tr, va = split_indices(labels, 100, seed=1)
    assert len(set(tr) & set(va)) == 0 and len(tr) + len(va) == 5000
    # the file is sorted by class: an unshuffled split would put only 9s in val
    assert np.bincount(labels[va]).tolist() == [100] * 10


def test_mnistm_recipe_is_abs_difference():
    digits = np.zeros((2, 28, 28), np.uint8)
    digits[1, 10:18, 10:18] = 200
    out = blend(digits, np.random.default_rng(0))
    patch = blend(np.zeros((1, 28, 28), np.uint8), np.random.default_rng(0))[0]
    # background pixels are the photo patch itself; a digit pixel is |patch - 255|
    assert np.array_equal(out[0], patch)
    again = blend(digits, np.random.default_rng(0))
    assert np.array_equal(out, again)
    d = digits[1] > 0
    assert not np.array_equal(out[1][d], out[0][d])


def test_mnistm_domain_shapes_ranges_determinism():
    a = load_domain("mnistm", "val", seed=0)
    b = load_domain("mnistm", "val", seed=0)
    assert a.images.shape == (1000, 28, 28, 3) and a.labels.min() == 0 and a.labels.max() == 9
    assert np.array_equal(a.images, b.images)
    x = to_model_range(a.images[:8])
    assert x.shape == (8, 3, 28, 28) and x.min() >= -1 and x.max() <= 1


def test_svhn_style_render():
    x, y = make_svhn_style("val", n_per_class=3, seed=0)
    x2, _ = make_svhn_style("val", n_per_class=3, seed=0)
    x3, _ = make_svhn_style("val", n_per_class=3, seed=1)
    assert x.shape == (30, 28, 28, 3) and np.bincount(y).tolist() == [3] * 10
    assert np.array_equal(x, x2) and not np.array_equal(x, x3)
    assert x.std() > 20  # coloured, textured crops, not flat


def test_fonts_are_validated():
    names = [f.rsplit("/", 1)[-1] for f in usable_fonts()]
    assert len(names) >= 10
    # these claim digits but draw symbols (see docs/machine-notes.md)
    assert "cmex10.ttf" not in names and "cmsy10.ttf" not in names


def test_font_order_does_not_depend_on_the_venv_location(tmp_path, monkeypatch):
    # matplotlib's fonts (inside the venv) must come first whether the venv's path sorts before
    # /usr/share/fonts (/tmp/...) or after it (/var/tmp/...): the order decides which copy of a face that
    # ships twice survives deduplication, and so the synthesised SVHN-style data
    import shutil
    import tempfile

    import matplotlib

    from difflab.data import svhn

    real = matplotlib.get_data_path()
    late = Path(tempfile.mkdtemp(dir="/var/tmp")) if os.access("/var/tmp", os.W_OK) else tmp_path / "late"
    try:
        for base in (tmp_path, late):
            root = base / "mpl-data"
            shutil.copytree(f"{real}/fonts/ttf", root / "fonts" / "ttf")
            monkeypatch.setattr(matplotlib, "get_data_path", lambda root=root: str(root))
            files = svhn._font_files()
            n_ours = len(list((root / "fonts" / "ttf").glob("*.ttf")))
            assert all(f.startswith(str(root)) for f in files[:n_ours])
            assert not any(f.startswith(str(root)) for f in files[n_ours:])
    finally:
        shutil.rmtree(late, ignore_errors=True)


def test_unknown_domain_and_split():
    with pytest.raises(DifflabError, match="unknown domain"):
        load_domain("usps")
    with pytest.raises(DifflabError, match="unknown split"):
        load_domain("mnistm", "test")


# --- readers for the real data ---------------------------------------------------------------------------

def _write_split(root, rows, size=28):
    d = root / "mnistm"
    (d / "data").mkdir(parents=True, exist_ok=True)
    for name, _ in rows:
        Image.fromarray(np.full((size, size, 3), 100, np.uint8)).save(d / "data" / name)
    (d / "train.csv").write_text("image_name,label\n" + "".join(f"{n},{y}\n" for n, y in rows))
    return d


def test_read_folder_layout(tmp_path):
    _write_split(tmp_path, [("00000.png", 3), ("00001.png", 7)])
    ds = load_domain("mnistm", "train", root=tmp_path)
    assert ds.images.shape == (2, 28, 28, 3) and ds.labels.tolist() == [3, 7]


def test_missing_and_empty_data_folder(tmp_path):
    with pytest.raises(DifflabError, match="data folder not found"):
        load_domain("mnistm", root=tmp_path / "nope")
    with pytest.raises(DifflabError, match="not found"):
        load_domain("mnistm", root=tmp_path)  # exists but empty


def test_csv_naming_missing_image(tmp_path):
    d = _write_split(tmp_path, [("00000.png", 3)])
    (d / "train.csv").write_text("image_name,label\n00000.png,3\n00009.png,1\n")
    with pytest.raises(DifflabError, match=r"train.csv:3: image .*00009.png not found"):
        load_domain("mnistm", root=tmp_path)


def test_label_outside_range(tmp_path):
    _write_split(tmp_path, [("00000.png", 12)])
    with pytest.raises(DifflabError, match="label 12 is outside 0-9"):
        load_domain("mnistm", root=tmp_path)


def test_corrupt_png(tmp_path):
    d = _write_split(tmp_path, [("00000.png", 1)])
    (d / "data" / "00000.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    with pytest.raises(DifflabError, match="00000.png: corrupt or unreadable image"):
        load_domain("mnistm", root=tmp_path)


def test_non_28_image_is_resized_with_warning(tmp_path):
    _write_split(tmp_path, [("00000.png", 1)], size=32)
    with pytest.warns(UserWarning, match="resized 1 image"):
        ds = load_domain("mnistm", root=tmp_path)
    assert ds.images.shape == (1, 28, 28, 3)


def test_svhn_mat(tmp_path):
    from scipy.io import savemat

    X = np.random.default_rng(0).integers(0, 255, (32, 32, 3, 4)).astype(np.uint8)
    (tmp_path / "svhn").mkdir()
    savemat(tmp_path / "svhn" / "train_32x32.mat", {"X": X, "y": np.array([[10], [1], [2], [9]])})
    ds = load_domain("svhn", "train", root=tmp_path)
    assert ds.images.shape == (4, 28, 28, 3) and ds.labels.tolist() == [0, 1, 2, 9]
    (tmp_path / "svhn" / "train_32x32.mat").write_bytes(b"garbage")
    with pytest.raises(DifflabError, match="not a readable SVHN .mat file"):
        load_domain("svhn", "train", root=tmp_path)
