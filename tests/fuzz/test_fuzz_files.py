"""Fuzz the binary readers: each input either loads into a well-formed result or raises DifflabError.

Targets: images (io.load_image), noise .pt files, .safetensors checkpoints (io.load_checkpoint),
SVHN .mat files, learned-embedding files (.safetensors and A1111 .pt) and user weight files.
"""

import io
import json

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image
from safetensors.torch import save as st_save

from difflab.ddim.noise import load_noise_file
from difflab.io import load_checkpoint, load_image, save_checkpoint
from difflab.models.state import read_state_dict
from difflab.personalize.embeddings import read_embeds

from .mutate import file_bytes, json_values, loads_or_refuses


def _png(mode: str, size=(7, 5)) -> bytes:
    buf = io.BytesIO()
    Image.new(mode, size, 90).save(buf, format="PNG")
    return buf.getvalue()


def _jpeg() -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.arange(8 * 8 * 3, dtype=np.uint8).reshape(8, 8, 3)).save(buf, format="JPEG")
    return buf.getvalue()


def _torch_bytes(obj) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def _checkpoint_bytes(workdir) -> bytes:
    save_checkpoint(workdir / "base.safetensors", {"w": torch.randn(3, 4), "n": torch.arange(3)}, {"kind": "x"})
    return (workdir / "base.safetensors").read_bytes()


DTYPES = [torch.float32, torch.float16, torch.bfloat16, torch.float64, torch.int64, torch.uint8, torch.bool]


@st.composite
def tensors(draw):
    shape = draw(st.lists(st.integers(0, 4), max_size=4))
    dtype = draw(st.sampled_from(DTYPES))
    values = draw(st.sampled_from([0.0, 1.5, float("nan"), float("inf"), -3.0]))
    return torch.full(shape, values).to(dtype) if dtype.is_floating_point else torch.zeros(shape, dtype=dtype)


pickled_objects = st.recursive(tensors() | st.integers() | st.text(max_size=4) | st.none(),
                               lambda inner: st.lists(inner, max_size=3)
                               | st.dictionaries(st.text(max_size=6), inner, max_size=3), max_leaves=6)


@given(file_bytes(_png("RGB"), _png("L"), _png("RGBA"), _png("P"), _jpeg()))
def test_image(workdir, raw):
    (workdir / "x.png").write_bytes(raw)
    result = loads_or_refuses(load_image, workdir / "x.png")
    if result is None:
        return
    a = result
    assert a.dtype == np.uint8 and a.ndim == 3 and a.shape[2] == 3 and a.size > 0


@given(st.one_of(file_bytes(_torch_bytes(torch.randn(1, 3, 4, 4))), pickled_objects.map(_torch_bytes)))
def test_noise_file(workdir, raw):
    (workdir / "00.pt").write_bytes(raw)
    result = loads_or_refuses(load_noise_file, workdir / "00.pt")
    if result is None:
        return
    x = result
    assert x.dtype == torch.float32 and x.dim() == 3 and bool(torch.isfinite(x).all())


@st.composite
def safetensors_files(draw):
    """Valid safetensors containers with arbitrary tensors and metadata (difflab's or not)."""
    named = draw(st.dictionaries(st.text(min_size=1, max_size=5), tensors(), max_size=3))
    named = {k: v.contiguous() for k, v in named.items()}
    meta = draw(st.none() | st.fixed_dictionaries({"difflab": json_values.map(json.dumps) | st.text(max_size=8)}))
    return st_save(named, metadata=meta)


@pytest.fixture(scope="module")
def checkpoint(workdir):
    return _checkpoint_bytes(workdir)


@given(data=st.data())
def test_checkpoint(workdir, checkpoint, data):
    raw = data.draw(st.one_of(file_bytes(checkpoint), safetensors_files()))
    (workdir / "c.safetensors").write_bytes(raw)
    result = loads_or_refuses(load_checkpoint, workdir / "c.safetensors")
    if result is None:
        return
    tensors_, meta = result
    assert isinstance(meta, dict)
    assert all(bool(torch.isfinite(t).all()) for t in tensors_.values() if t.is_floating_point())


def _mat_bytes(**arrays) -> bytes:
    from scipy.io import savemat

    buf = io.BytesIO()
    savemat(buf, arrays)
    return buf.getvalue()


MAT = _mat_bytes(X=np.zeros((32, 32, 3, 2), np.uint8), y=np.array([[10], [3]], np.uint8))
mat_arrays = st.fixed_dictionaries({}, optional={
    "X": st.sampled_from([np.zeros((32, 32, 3, 2), np.uint8), np.zeros((32, 32, 3, 2)), np.zeros((32, 32, 3)),
                          np.zeros((32, 32, 3, 0), np.uint8), np.array(["x"])]),
    "y": st.sampled_from([np.array([[1], [2]]), np.array([[1.5], [2]]), np.array([[np.nan], [2]]),
                          np.array([[11], [2]]), np.array([["a"], ["b"]]), np.zeros((0, 1))])})


# each example starts a child process (the parser is isolated from crashes): far fewer examples
@settings(max_examples=max(3, settings.default.max_examples // 80))
@given(st.one_of(file_bytes(MAT), mat_arrays.map(lambda d: _mat_bytes(**d))))
def test_svhn_mat(workdir, raw):
    from difflab.data.readers import read_svhn_mat

    (workdir / "train_32x32.mat").write_bytes(raw)
    result = loads_or_refuses(read_svhn_mat, workdir / "train_32x32.mat")
    if result is None:
        return
    images, labels = result
    assert images.dtype == np.uint8 and images.shape[1:] == (28, 28, 3) and len(images) == len(labels) >= 1
    assert labels.min() >= 0 and labels.max() <= 9


EMBEDS = st_save({"<new1>": torch.randn(2, 8)}, metadata={"difflab": "{}"})
A1111 = _torch_bytes({"string_to_param": {"*": torch.randn(1, 8)}, "name": "tok", "step": 3})


@given(suffix=st.sampled_from([".safetensors", ".pt", ".bin"]),
       raw=st.one_of(file_bytes(EMBEDS, A1111), pickled_objects.map(_torch_bytes), safetensors_files()))
def test_embeddings(workdir, suffix, raw):
    path = workdir / f"learned{suffix}"
    path.write_bytes(raw)
    result = loads_or_refuses(read_embeds, path)
    if result is None:
        return
    embeds = result
    for token, v in embeds.items():
        assert isinstance(token, str) and v.dtype == torch.float32 and v.dim() == 2 and v.numel() > 0
        assert bool(torch.isfinite(v).all())


STATE = _torch_bytes({"ema": {"w": torch.ones(2)}, "step": 3})


@given(suffix=st.sampled_from([".pt", ".safetensors"]),
       raw=st.one_of(file_bytes(STATE, EMBEDS), pickled_objects.map(_torch_bytes)))
def test_user_weights(workdir, suffix, raw):
    path = workdir / f"weights{suffix}"
    path.write_bytes(raw)
    result = loads_or_refuses(read_state_dict, path, None)
    if result is None:
        return
    state, where = result
    assert state and all(isinstance(v, torch.Tensor) for v in state.values()) and isinstance(where, str)
