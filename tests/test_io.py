"""difflab.io: checkpoint digest and weight checks, torch/JSON readers, image decoding; one-line errors."""

import json
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from difflab.errors import DifflabError
from difflab.io import (
    IMAGE_SUFFIXES,
    check_finite,
    check_float_weights,
    image_files,
    is_image_file,
    load_checkpoint,
    load_image,
    load_torch_file,
    read_json,
    save_checkpoint,
    tensor_digest,
)

ASSETS = Path(__file__).resolve().parents[1] / "src" / "difflab" / "assets"


def _one_line(e) -> str:
    text = str(e.value)
    assert "\n" not in text
    return text


def test_checkpoint_round_trip_stores_a_digest(tmp_path):
    t = {"w": torch.randn(4, 3), "b": torch.zeros(3, dtype=torch.bfloat16), "n": torch.tensor(7)}
    save_checkpoint(tmp_path / "c.safetensors", t, {"kind": "x"})
    back, meta = load_checkpoint(tmp_path / "c.safetensors")
    assert meta == {"kind": "x"} and all(torch.equal(back[k], t[k]) for k in t)
    assert tensor_digest(back) == tensor_digest(t)
    assert tensor_digest({**t, "n": torch.tensor(8)}) != tensor_digest(t)
    assert tensor_digest({"w2": t["w"]}) != tensor_digest({"w": t["w"]})  # names count


def test_flipped_bytes_in_tensor_data_are_refused(tmp_path):
    path = tmp_path / "c.safetensors"
    save_checkpoint(path, {"w": torch.randn(64, 64)}, {"kind": "x"})
    raw = bytearray(path.read_bytes())
    end = len(raw) - 200
    raw[end - 64:end] = bytes(b ^ 0x10 for b in raw[end - 64:end])  # 64 bytes inside the tensor
    path.write_bytes(bytes(raw))
    with pytest.raises(DifflabError, match="corrupt") as e:
        load_checkpoint(path)
    assert str(path) in _one_line(e)


def test_files_without_a_digest_still_load(tmp_path):
    save_file({"w": torch.ones(2)}, str(tmp_path / "old.safetensors"), metadata={"difflab": '{"kind": "x"}'})
    tensors, meta = load_checkpoint(tmp_path / "old.safetensors")
    assert meta == {"kind": "x"} and torch.equal(tensors["w"], torch.ones(2))
    for name in ("digits_unet", "classifier_mnistm", "classifier_svhn"):  # shipped before digests existed
        tensors, meta = load_checkpoint(ASSETS / f"{name}.safetensors")
        assert tensors and meta["kind"]


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_weights_are_refused_naming_file_and_tensor(tmp_path, bad):
    w = torch.randn(5)
    w[2] = bad
    save_checkpoint(tmp_path / "c.safetensors", {"ok": torch.ones(1), "layer.weight": w}, {})
    with pytest.raises(DifflabError, match=r"c.safetensors: tensor 'layer.weight' holds 1 NaN/inf") as e:
        load_checkpoint(tmp_path / "c.safetensors")
    _one_line(e)


def test_metadata_that_is_not_an_object_is_refused(tmp_path):
    save_file({"w": torch.ones(2)}, str(tmp_path / "c.safetensors"), metadata={"difflab": "[1, 2]"})
    with pytest.raises(DifflabError, match="not an object"):
        load_checkpoint(tmp_path / "c.safetensors")


def test_integer_weights_where_floats_are_expected_are_refused():
    own = {"conv.weight": torch.zeros(2), "bn.num_batches_tracked": torch.tensor(0)}
    check_float_weights({"conv.weight": torch.ones(2), "bn.num_batches_tracked": torch.tensor(3)}, "m.pt", own)
    with pytest.raises(DifflabError, match=r"m.pt: tensor 'conv.weight' has dtype int64, expected float"):
        check_float_weights({"conv.weight": torch.ones(2, dtype=torch.int64)}, "m.pt", own)
    with pytest.raises(DifflabError, match="dtype bool"):
        check_float_weights({"x": torch.ones(2, dtype=torch.bool)}, "m.pt")
    check_finite({"mask": torch.tensor([-float("inf")])}, "m.pt", names={"weight"})  # not a parameter: allowed


def test_torch_files(tmp_path):
    torch.save(torch.ones(2), tmp_path / "ok.pt")
    assert torch.equal(load_torch_file(tmp_path / "ok.pt"), torch.ones(2))
    (tmp_path / "text.pt").write_text("hello, this is not a tensor\n")
    with pytest.raises(DifflabError, match=r"text.pt: not a readable noise file \(not written by torch.save") as e:
        load_torch_file(tmp_path / "text.pt", "noise file")
    _one_line(e)
    with pytest.raises(DifflabError, match="not found"):
        load_torch_file(tmp_path / "missing.pt")


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned > /dev/null",))


@pytest.mark.parametrize("how", ["torch.save", "pickle"])
def test_malicious_pickle_is_refused_in_one_line(tmp_path, how):
    path = tmp_path / "evil.pt"
    if how == "torch.save":
        torch.save({"x": _Evil()}, path)
    else:
        path.write_bytes(pickle.dumps(_Evil(), protocol=4))
    with pytest.raises(DifflabError, match="refused: the file holds Python objects other than tensors") as e:
        load_torch_file(path)
    text = _one_line(e)
    assert "weights_only" not in text and len(text) < 300  # not torch's advice to turn the check off


def test_json_reader(tmp_path):
    p = tmp_path / "x.json"
    p.write_bytes(b'\xef\xbb\xbf{"a": 1}')  # a BOM, as Windows editors write
    assert read_json(p) == {"a": 1}
    cases = [(b'{"a": 1, "a": 2}', "key 'a' appears twice"), (b'{"a": }', "not valid JSON"),
             (b'{\n"a": "caf\xe9"}', r":2: label file is not UTF-8 text \(byte 0xe9"),
             (b"[" * 100_000, "nested too deeply")]
    for raw, message in cases:
        p.write_bytes(raw)
        with pytest.raises(DifflabError, match=message) as e:
            read_json(p, "label file")
        assert _one_line(e).startswith(str(p) + ":")
    p.write_bytes(b'{"a": 1, "a": 2}')
    assert read_json(p, unique_keys=False) == {"a": 2}


def test_images(tmp_path):
    from PIL import Image

    Image.fromarray(np.zeros((5, 7, 3), np.uint8)).save(tmp_path / "ok.png")
    assert load_image(tmp_path / "ok.png").shape == (5, 7, 3)
    assert load_image(tmp_path / "ok.png", size=4, mode="L").shape == (4, 4)
    good = (tmp_path / "ok.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(good[: len(good) // 2])
    (tmp_path / "junk.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    for name in ("cut.png", "junk.png"):
        with pytest.raises(DifflabError, match="corrupt or unreadable image") as e:
            load_image(tmp_path / name)
        _one_line(e)


def test_image_files_one_definition(tmp_path):
    # every folder reader takes the same files: visible regular files with a suffix of IMAGE_SUFFIXES,
    # in any case; a folder named like an image, a macOS `._` fork and a text file are not images
    for name in ("b.PNG", "a.jpg", "c.tiff", "d.gif", "e.webp", "f.bmp", "g.jpeg", "h.tif", "notes.txt", "._a.jpg"):
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "dir.png").mkdir()
    assert [p.name for p in image_files(tmp_path)] == ["a.jpg", "b.PNG", "c.tiff", "d.gif", "e.webp", "f.bmp",
                                                       "g.jpeg", "h.tif"]
    assert not is_image_file(tmp_path / "missing.png") and not is_image_file(tmp_path / "dir.png")
    assert len(set(IMAGE_SUFFIXES)) == len(IMAGE_SUFFIXES) == 8


def test_checkpoint_permissions_follow_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        save_checkpoint(tmp_path / "c.safetensors", {"w": torch.ones(1)}, {})
    finally:
        os.umask(old)
    assert (tmp_path / "c.safetensors").stat().st_mode & 0o777 == 0o644
    assert json.loads(json.dumps({"ok": 1}))


def test_folder_readers_skip_what_is_not_an_image_file(tmp_path):
    # ti train/score and ddim invert/mse list folders with image_files: a macOS `._` fork (undecodable)
    # and a sub-folder named like an image must not reach the decoder
    from PIL import Image

    from difflab.ddim.mse import compare_dirs
    from difflab.ddim.run import load_image_dir
    from difflab.personalize.prompts import Concept
    from difflab.personalize.score import reference_images
    from difflab.personalize.train import load_concept_images

    for name in ("cat", "gt"):
        folder = tmp_path / name
        folder.mkdir()
        Image.new("RGB", (8, 8), (10, 20, 30)).save(folder / "x.png")
        (folder / "._x.png").write_bytes(b"\x00\x05\x16\x07 resource fork")
        (folder / "y.jpg").mkdir()
    assert len(load_concept_images(tmp_path / "cat", 8)) == 1
    assert len(reference_images(tmp_path, Concept("cat", "cat", "<cat>", [], [], []))) == 1
    assert load_image_dir(tmp_path / "cat", None)[0] == ["x"]
    assert [row[0] for row in compare_dirs(tmp_path / "cat", tmp_path / "gt")] == ["x"]
