"""Report metrics against scikit-learn on hand-made logits (independent reference)."""

import json
from pathlib import Path

import pytest
import torch
from sklearn.metrics import confusion_matrix as sk_confusion
from sklearn.metrics import top_k_accuracy_score

from difflab.clip.dataset import LabelledFolder
from difflab.clip.zeroshot import ZeroShotResult, confusion_matrix, summarise, topk_accuracy


def _result(n=60, c=7, seed=0):
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, c, (n,), generator=g)
    logits = torch.randn(n, c, generator=g) * 3
    logits[torch.arange(n), labels] += 2.0  # better than chance, not perfect
    names = [f"class_{i}" for i in range(c)]
    files = [Path(f"{int(y)}_{i}.png") for i, y in enumerate(labels)]
    folder = LabelledFolder(files, labels.tolist(), names, [str(i) for i in range(c)], "flat")
    return ZeroShotResult(folder, files, labels, logits, [], ["a photo of a {}."], 100.0)


@pytest.mark.parametrize("k", [1, 3, 5])
def test_topk_matches_sklearn(k):
    r = _result()
    ref = top_k_accuracy_score(r.labels.numpy(), r.logits.numpy(), k=k, labels=list(range(7)))
    assert topk_accuracy(r.logits, r.labels, k) == pytest.approx(ref)


def test_summary_against_sklearn():
    r = _result()
    pred = r.logits.argmax(1)
    cm = confusion_matrix(pred, r.labels, 7)
    ref = sk_confusion(r.labels.numpy(), pred.numpy(), labels=list(range(7)))
    assert cm.tolist() == ref.tolist()
    s = summarise(r, top_k=5, n_cases=5, n_pairs=3)
    assert s["top1"] == pytest.approx((pred == r.labels).float().mean().item())
    for c in range(7):
        v = s["per_class"][f"class_{c}"]
        assert v["n"] == ref[c].sum() and v["accuracy"] == pytest.approx(ref[c, c] / ref[c].sum())
    off = ref.copy()
    off[range(7), range(7)] = 0
    counts = [p["count"] for p in s["confused_pairs"]]
    assert counts == sorted(off.flatten(), reverse=True)[:3]
    top = s["confused_pairs"][0]
    assert off[int(top["true"][-1]), int(top["predicted"][-1])] == off.max()
    probs = r.logits.softmax(1)
    fail_conf = sorted(probs.max(1).values[pred != r.labels].tolist(), reverse=True)[:5]
    assert [c["confidence"] for c in s["failures"]] == pytest.approx(fail_conf)
    for case in s["successes"]:
        assert case["true"] == case["predicted"] and case["true_rank"] == 1
    for case in s["failures"]:
        assert case["true"] != case["predicted"] and case["true_rank"] > 1
        assert case["true_prob"] < case["confidence"]


def test_class_without_images_has_no_accuracy():
    r = _result(n=5, c=9)
    s = summarise(r)
    empty = [v for v in s["per_class"].values() if v["n"] == 0]
    assert empty and all(v["accuracy"] is None for v in empty)


def test_accuracies_are_exact_fractions():
    # count / total in Python floats: JSON shows 0.2 for 8/40, not float32's 0.20000000298023224
    labels = torch.arange(40) % 4
    logits = torch.zeros(40, 4)
    logits[torch.arange(8), labels[:8]] = 1.0  # the first 8 right, the rest argmax 0 (label != 0 ones wrong)
    logits[8:, :] = torch.tensor([0.0, 0.0, 0.0, 1.0]) - torch.nn.functional.one_hot(labels[8:], 4)
    assert topk_accuracy(logits, labels, 1) == 8 / 40 == 0.2
    folder = LabelledFolder([Path(f"{i}.png") for i in range(40)], labels.tolist(), list("abcd"), list("0123"), "flat")
    s = summarise(ZeroShotResult(folder, folder.files, labels, logits, [], ["{}"], 100.0))
    assert json.dumps(s["top1"]) == "0.2"
