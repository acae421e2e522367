"""Evaluation of personalized styles and the symbol (concepts/style_eval.py) on tiny inputs: the classifier
cache, the scores, folder reading. The real classifiers' accuracies are benchmarked, never tested here."""

import numpy as np
import pytest
import torch

from difflab.concepts.style_eval import (
    SYMBOL_CLASS,
    EvalClassifierConfig,
    classifier_path,
    eval_classifier,
    read_images,
    real_sets,
    score_folder,
    target_data,
    target_kind,
)
from difflab.data import to_model_range
from difflab.data.styles import SYMBOL, make_style, make_symbol, write_images
from difflab.digits.evaluate import score
from difflab.errors import DifflabError
from difflab.models.classifier import ClassifierConfig, DigitClassifier

TINY = EvalClassifierConfig(train_size=60, val_size=30, epochs=1, batch_size=20)


def test_target_names():
    assert target_kind("lcd") == ("style", "lcd")
    assert target_kind("symbol-svhn") == ("symbol", "svhn")
    for bad in ("symbol-mnist", "neon", "svhn"):
        with pytest.raises(DifflabError, match="unknown evaluation target"):
            target_kind(bad)


def test_symbol_target_data(monkeypatch):
    # the symbol's domain digits come from load_domain: a tiny stand-in keeps the test from rendering 60 crops
    from difflab.concepts import style_eval
    from difflab.data.datasets import DigitSet

    fake = DigitSet(np.zeros((60, 28, 28, 3), np.uint8), np.arange(60) % 10)
    monkeypatch.setattr(style_eval, "load_domain", lambda *a, **k: fake)
    x, y = target_data("symbol-mnistm", "train", 60)
    assert x.shape == (66, 28, 28, 3) and (y == SYMBOL_CLASS).sum() == 6
    assert x[y == SYMBOL_CLASS].std() > 20  # the symbols are drawn, the stand-in digits are blank


def test_classifier_trained_then_cached(tmp_path):
    model, meta = eval_classifier("lcd", TINY, cache=tmp_path)
    assert not meta["cached"] and 0 <= meta["val_acc"] <= 1 and meta["val_total"] == 30
    assert meta["train_images"] == 60 and meta["train_s"] > 0
    path = classifier_path("lcd", TINY, tmp_path)
    assert path.is_file() and path.name.startswith("lcd_r1_c1_")
    again, meta2 = eval_classifier("lcd", TINY, cache=tmp_path)
    assert meta2["cached"] and meta2["val_acc"] == meta["val_acc"]
    for a, b in zip(model.state_dict().values(), again.state_dict().values()):
        assert torch.equal(a, b)
    # another setting is another file, never a stale hit
    assert classifier_path("lcd", EvalClassifierConfig(epochs=2), tmp_path) != path


def test_score_ranges_and_floor():
    torch.manual_seed(0)
    model = DigitClassifier(ClassifierConfig(width=8)).eval()
    real, labels = make_style("blueprint", "val", 6)
    ref, _ = make_style("blueprint", "train", 6)
    x, y = to_model_range(real), torch.from_numpy(labels)
    res = score(model, x[:30], y[:30], x, to_model_range(ref)[:30])
    assert res["total"] == 30 and res["n_real"] == 60 and 0 <= res["acc"] <= 1
    assert res["correct"] == sum(res["per_class_acc"][c] * int((y[:30] == c).sum()) for c in range(10))
    assert sum(res["confused_with"].values()) == 30 - res["correct"]
    assert np.isfinite(res["fd_generated_vs_real"]) and res["fd_real_vs_real"] >= 0
    # images of another style sit farther from the real ones than real images of the same style
    other = to_model_range(make_style("lcd", "val", 3)[0])
    far = score(model, other, y[:30], x, to_model_range(ref)[:30])
    assert far["fd_generated_vs_real"] > res["fd_real_vs_real"]


def test_score_folder_style_and_symbol(tmp_path):
    torch.manual_seed(0)
    model = DigitClassifier(ClassifierConfig(width=8, num_classes=11)).eval()
    x, y = make_style("lcd", "val", 2)
    write_images(tmp_path / "lcd", x, y)
    res = score_folder("lcd", tmp_path / "lcd", model, val_size=20)
    assert res["total"] == 20 and res["n_real"] == 20
    write_images(tmp_path / "svhn", make_symbol("mnistm", "val", 4), [SYMBOL] * 4)
    assert read_images(tmp_path / "svhn", SYMBOL).shape == (4, 28, 28, 3)
    res = score_folder("symbol-mnistm", tmp_path / "svhn", model, val_size=8)
    assert res["total"] == 4 and set(res["per_class_acc"]) == {SYMBOL_CLASS}
    with pytest.raises(DifflabError, match="no images named A_"):
        read_images(tmp_path / "lcd", SYMBOL)


def test_real_sets_sizes():
    real, labels, ref = real_sets("lcd", 15, val_size=20)
    assert real.shape == (20, 28, 28, 3) and labels.shape == (20,) and ref.shape == (15, 28, 28, 3)
    real, labels, ref = real_sets("symbol-mnistm", 5, val_size=7)
    assert len(real) == 7 and (labels == SYMBOL_CLASS).all() and len(ref) == 5
