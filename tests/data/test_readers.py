"""Readers of the real digit data (difflab.data.readers): every broken file is one DifflabError line."""

import numpy as np
import pytest
from PIL import Image

from difflab.cli import main
from difflab.data import load_domain
from difflab.data.readers import read_csv_split, read_svhn_mat
from difflab.errors import DifflabError


def _split(root, csv_bytes: bytes, split="train"):
    d = root / "mnistm"
    (d / "data").mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((28, 28, 3), 100, np.uint8)).save(d / "data" / "a.png")
    (d / f"{split}.csv").write_bytes(csv_bytes)
    return d


def test_latin1_csv_is_one_line_naming_the_file(tmp_path):
    d = _split(tmp_path, "image_name,label\na.png,3\n# café\n".encode("latin-1"))
    with pytest.raises(DifflabError, match=r"train.csv:3: split file is not UTF-8 text \(byte 0xe9\)") as e:
        read_csv_split(d, "train")
    assert "\n" not in str(e.value)


def test_utf8_bom_csv_is_read(tmp_path):
    d = _split(tmp_path, b"\xef\xbb\xbfimage_name,label\na.png,3\n")  # as Excel saves "CSV UTF-8"
    images, labels = read_csv_split(d, "train")
    assert images.shape == (1, 28, 28, 3) and labels.tolist() == [3]


@pytest.mark.parametrize("argv", [["data", "preview", "{out}", "--data-root", "{root}"],
                                  ["digits", "train", "--out-dir", "{out}", "--data-root", "{root}"]])
def test_cli_latin1_csv(tmp_path, capsys, argv):
    for split in ("train", "val"):
        _split(tmp_path / "root", "image_name,label\nä.png,3\n".encode("latin-1"), split)
    out = tmp_path / "out"
    code = main([a.format(out=out, root=tmp_path / "root") for a in argv])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and ".csv:2: split file is not UTF-8 text" in err
    assert not out.exists()



def test_preview_replaces_only_its_grids_and_is_locked(tmp_path):
    from difflab.digits.viz_data import preview
    from difflab.io import inplace_output_dir

    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("not the preview's")  # OUT may be a folder in use: its files stay
    for _ in range(2):  # a second preview replaces the first one's grids
        paths = preview(out)
        assert paths == [out / "mnistm_preview.png", out / "svhn_preview.png"]
        assert sorted(p.name for p in out.iterdir()) == ["mnistm_preview.png", "notes.txt", "svhn_preview.png"]
    with inplace_output_dir(out, resume=True):  # stands for another run writing the folder
        with pytest.raises(DifflabError, match="another difflab run"):
            preview(out)


def test_svhn_mat_with_wrong_types(tmp_path):
    from scipy.io import savemat

    X = np.zeros((32, 32, 3, 2), np.uint8)
    for kw, message in [({"X": X.astype(np.float64), "y": np.array([[1], [2]])}, "X has dtype float64"),
                        ({"X": X, "y": np.array([[1.5], [2]])}, "not whole numbers"),
                        ({"X": X, "y": np.zeros((0, 1))}, "non-empty array"),
                        ({"X": X[..., :1], "y": np.array([[1], [2]])}, r"expected X of shape"),
                        ({"X": X}, "not a readable SVHN .mat file")]:
        savemat(tmp_path / "t.mat", kw)
        with pytest.raises(DifflabError, match=message):
            read_svhn_mat(tmp_path / "t.mat")


def test_real_data_root_round_trip(tmp_path):
    _split(tmp_path, b"image_name,label\na.png,7\n")
    assert load_domain("mnistm", "train", root=tmp_path).labels.tolist() == [7]


def test_svhn_mat_that_crashes_scipys_parser_is_one_line(tmp_path):
    """Found by tests/fuzz: one byte (the data type of y's last element, 2 -> 22) makes scipy's compiled
    .mat reader segfault, which used to kill difflab without a word; the parse now runs in a child."""
    from scipy.io import savemat

    savemat(tmp_path / "t.mat", {"X": np.zeros((32, 32, 3, 2), np.uint8), "y": np.array([[10], [3]], np.uint8)})
    raw = bytearray((tmp_path / "t.mat").read_bytes())
    assert raw[-8] == 2
    raw[-8] = 22
    (tmp_path / "t.mat").write_bytes(bytes(raw))
    with pytest.raises(DifflabError, match="t.mat: not a readable SVHN .mat file") as e:
        read_svhn_mat(tmp_path / "t.mat")
    assert "\n" not in str(e.value)
