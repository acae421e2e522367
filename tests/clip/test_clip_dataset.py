"""Folder layouts and every bad input of issue 4 that is about the data."""

import json
import subprocess
import sys

import pytest

from difflab.cli import main
from difflab.clip.dataset import read_id2label, scan_folder
from difflab.errors import DifflabError

from .helpers import NAMES, make_flat_folder, make_subfolders


def test_flat_layout(tmp_path):
    images, labels = make_flat_folder(tmp_path, per_class=2)
    folder = scan_folder(images, labels)
    assert folder.layout == "flat" and folder.classnames == NAMES and folder.class_ids == ["0", "1", "2", "3"]
    assert [f.name for f in folder.files][:3] == ["0_000.png", "0_001.png", "1_000.png"]
    assert folder.labels == [0, 0, 1, 1, 2, 2, 3, 3]


def test_ids_sort_numerically_and_match_leading_zeros(tmp_path):
    labels = tmp_path / "l.json"
    labels.write_text(json.dumps({"10": "ten", "2": "two", "1": "one"}))
    assert list(read_id2label(labels).values()) == ["one", "two", "ten"]
    images, _ = make_flat_folder(tmp_path / "x", per_class=1, names=["a", "b", "c"])
    (images / "0_000.png").rename(images / "02_000.png")  # '02' is class 2 ('ten')
    folder = scan_folder(images, labels)
    assert folder.classnames[folder.labels[folder.files.index(images / "02_000.png")]] == "two"
    labels.write_text(json.dumps(["zero", "one"]))  # a list works too: index = id
    assert read_id2label(labels) == {"0": "zero", "1": "one"}


def test_subfolders_with_and_without_labels(tmp_path):
    root = make_subfolders(tmp_path / "d", names=["0", "1"], per_class=1)
    assert scan_folder(root).classnames == ["0", "1"]
    labels = tmp_path / "l.json"
    labels.write_text(json.dumps({"0": "maple_tree", "1": "oak_tree"}))
    assert scan_folder(root, labels).classnames == ["maple_tree", "oak_tree"]
    labels.write_text(json.dumps({"0": "maple_tree"}))
    with pytest.raises(DifflabError, match="not a class id in the label file"):
        scan_folder(root, labels)
    (root / "0_000.png").write_bytes((root / "0" / "0.jpg").read_bytes())
    with pytest.raises(DifflabError, match="use one layout"):
        scan_folder(root, labels)


@pytest.mark.parametrize("content, match", [
    ("{not json", "not valid JSON"),
    ("[]", "non-empty JSON object"),
    ('"apple"', "non-empty JSON object"),
    ('{"0": 5}', "has no name"),
    ('{"0": "cat", "1": "cat"}', "used by more than one id"),
    ('{"7": "cat", "07": "dog"}', "appears twice"),
    ('{"0": "cat", "1": "dog", "1": "fish"}', "key '1' appears twice"),  # plain json keeps "fish" silently
    ('\ufeff{"0": "caf\udce9"}', "label file is not UTF-8 text"),
    ('[' * 50_000, "nested too deeply"),
])
def test_garbled_id2label(tmp_path, content, match):
    images, labels = make_flat_folder(tmp_path, per_class=1)
    labels.write_bytes(content.encode("utf-8", "surrogateescape"))
    with pytest.raises(DifflabError, match=match) as e:
        scan_folder(images, labels)
    assert "\n" not in str(e.value) and str(labels) in str(e.value)


def test_bad_folders(tmp_path):
    images, labels = make_flat_folder(tmp_path, per_class=1)
    with pytest.raises(DifflabError, match="label file not found"):
        scan_folder(images, tmp_path / "missing.json")
    with pytest.raises(DifflabError, match="need --labels"):
        scan_folder(images)
    (images / "9_000.png").write_bytes((images / "0_000.png").read_bytes())
    with pytest.raises(DifflabError, match="class id '9' is not in the label file"):
        scan_folder(images, labels)
    (images / "9_000.png").rename(images / "cat.png")
    with pytest.raises(DifflabError, match="not {class_id}_{image_id}"):
        scan_folder(images, labels)
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "readme.txt").write_text("no images here")
    with pytest.raises(DifflabError, match="no images found"):
        scan_folder(empty)
    (empty / "cls").mkdir()
    with pytest.raises(DifflabError, match="contain no images"):
        scan_folder(empty)
    with pytest.raises(DifflabError, match="image folder not found"):
        scan_folder(tmp_path / "nope")


def test_all_unreadable_is_refused(tmp_path, tiny_clip_dir, capsys):
    root = tmp_path / "d"
    (root / "cat").mkdir(parents=True)
    (root / "cat" / "a.png").write_bytes(b"garbage")
    code = main(["clip", "zeroshot", str(root), "--model", str(tiny_clip_dir)])
    assert code == 2 and "none of the 1 images could be read" in capsys.readouterr().err


def test_cli_module_is_light():
    # `difflab --help` imports every job's cli.py: ours must not pull torch or transformers
    code = "import sys, difflab.clip.cli; print(sorted({'torch', 'transformers', 'PIL'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
