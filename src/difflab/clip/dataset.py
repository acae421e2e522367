"""Labelled image folders for zero-shot evaluation, in the two common layouts.

1. Flat, labels in file names: `IMAGES_DIR/{class_id}_{image_id}.png` + `id2label.json` mapping every class
   id to its name, e.g. {"0": "apple", "1": "aquarium_fish", ...} (a JSON list, index = id, also works).
   All classes in the mapping are candidates, even those without images.
2. One sub-folder per class: `IMAGES_DIR/<class>/*.png`; the folder name is the class name, or a class id
   looked up in `--labels` when one is given. Every sub-folder is a class.

Files are listed in sorted order; hidden files and files without an image suffix (`io.IMAGE_SUFFIXES`) are
ignored.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from difflab.errors import DifflabError
from difflab.io import IMAGE_SUFFIXES, is_image_file, read_json

INT_ID = re.compile(r"\s*-?\d+\s*")
FLAT_NAME = re.compile(r"^(?P<cls>[^_]+)_(?P<img>.+)$")  # class id: everything before the first '_'


@dataclass
class LabelledFolder:
    """files[i] has true class index labels[i]; class index c is named classnames[c] (id class_ids[c])."""

    files: list[Path]
    labels: list[int]
    classnames: list[str]
    class_ids: list[str]
    layout: str  # "flat" or "subfolders"


def _key(class_id: str):
    """Ids compare as integers when they are ('07' == '7'), else as text."""
    # \d is what int() parses (str.isdigit() also accepts '²', on which int() fails)
    return int(class_id) if INT_ID.fullmatch(class_id) else class_id


def read_id2label(path) -> dict[str, str]:
    """id2label.json -> {class id: class name}, in id order. Accepts a JSON object or a list (index = id)."""
    path = Path(path)
    if not path.is_file():
        raise DifflabError(f"dataset.py: {path}: label file not found (pass --labels id2label.json)")
    try:
        data = read_json(path, "label file")  # refuses a key written twice: plain json keeps the last one
    except DifflabError as e:
        raise DifflabError(f"dataset.py: {e}") from None
    if isinstance(data, list):
        data = {str(i): name for i, name in enumerate(data)}
    if not isinstance(data, dict) or not data:
        raise DifflabError(f"dataset.py: {path}: expected a non-empty JSON object {{\"id\": \"name\"}}")
    bad = [k for k, v in data.items() if not isinstance(v, str) or not v.strip()]
    if bad:
        raise DifflabError(f"dataset.py: {path}: class {bad[0]!r} has no name (names must be strings)")
    keys = [_key(k) for k in data]
    if len(set(keys)) != len(keys):
        raise DifflabError(f"dataset.py: {path}: the same class id appears twice (e.g. '7' and '07')")
    names = [v.strip() for v in data.values()]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:  # two ids with one name could never be told apart by a text prompt
        raise DifflabError(f"dataset.py: {path}: class name {dupes[0]!r} is used by more than one id")
    order = sorted(range(len(keys)), key=lambda i: (isinstance(keys[i], str), keys[i]))
    items = list(data.items())
    return {str(items[i][0]): items[i][1].strip() for i in order}


def scan_folder(images_dir, labels=None) -> LabelledFolder:
    """Find the layout of `images_dir` and list (file, class) pairs. Refuses empty or mixed folders."""
    root = Path(images_dir)
    if not root.is_dir():
        raise DifflabError(f"dataset.py: {root}: image folder not found")
    entries = sorted(p for p in root.iterdir() if not p.name.startswith("."))
    flat = [p for p in entries if is_image_file(p)]
    subdirs = [p for p in entries if p.is_dir()]
    id2label = read_id2label(labels) if labels is not None else None
    if flat and any(any(is_image_file(q) for q in d.iterdir()) for d in subdirs):
        raise DifflabError(f"dataset.py: {root}: has both images and class sub-folders with images; "
                           "use one layout")
    if flat:
        if id2label is None:
            raise DifflabError(f"dataset.py: {root}: images named {{class_id}}_{{image_id}} need "
                               "--labels id2label.json")
        return _flat(root, flat, id2label)
    if subdirs:
        return _subfolders(root, subdirs, id2label)
    raise DifflabError(f"dataset.py: {root}: no images found (expected {{class_id}}_{{image_id}}.png files or "
                       f"one sub-folder of images per class; suffixes {', '.join(sorted(IMAGE_SUFFIXES))})")


def _flat(root: Path, files: list[Path], id2label: dict[str, str]) -> LabelledFolder:
    index = {_key(k): i for i, k in enumerate(id2label)}
    labels = []
    for p in files:
        m = FLAT_NAME.match(p.stem)
        if m is None:
            raise DifflabError(f"dataset.py: {p}: file name is not {{class_id}}_{{image_id}}")
        cls = _key(m["cls"])
        if cls not in index:
            raise DifflabError(f"dataset.py: {p}: class id {m['cls']!r} is not in the label file")
        labels.append(index[cls])
    return LabelledFolder(files, labels, list(id2label.values()), list(id2label), "flat")


def _subfolders(root: Path, subdirs: list[Path], id2label: dict[str, str] | None) -> LabelledFolder:
    if id2label is not None:
        index = {_key(k): k for k in id2label}
        unknown = [d.name for d in subdirs if _key(d.name) not in index]
        if unknown:
            raise DifflabError(f"dataset.py: {root / unknown[0]}: folder name is not a class id in the label file")
        ids = [index[_key(d.name)] for d in subdirs]
        names = [id2label[i] for i in ids]
    else:
        ids = names = [d.name for d in subdirs]
    files, labels = [], []
    for c, d in enumerate(subdirs):
        for p in sorted(d.iterdir()):
            if is_image_file(p):
                files.append(p)
                labels.append(c)
    if not files:
        raise DifflabError(f"dataset.py: {root}: the class sub-folders contain no images")
    return LabelledFolder(files, labels, list(names), list(ids), "subfolders")
