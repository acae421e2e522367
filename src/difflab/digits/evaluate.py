"""`difflab digits eval OUT`: digit accuracy of generated images by each domain's own classifier,
beside the classifier's accuracy on real validation images, and Fréchet distances of penultimate
classifier features (generated vs real, and real vs real as the floor to compare against)."""

from __future__ import annotations

import json
import re
import warnings
from pathlib import Path

import numpy as np
import torch
from scipy import linalg

from difflab.data import DOMAINS, load_domain, to_model_range
from difflab.device import resolve_device
from difflab.digits.classify import accuracy, predict
from difflab.errors import DifflabError
from difflab.io import atomic_path, load_image
from difflab.models.digits import default_classifier_path, load_classifier

NAME_RE = re.compile(r"^(\d)_(\d{3,})\.png$")
PRETTY = {"mnistm": "MNIST-M", "svhn": "SVHN"}


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to feature sets a (N, D) and b (M, D) (as in FID)."""
    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", linalg.LinAlgWarning)  # singular products are handled below
        covmean = linalg.sqrtm(s1 @ s2)
        if not np.isfinite(covmean).all():  # near-singular product: regularise, as pytorch-fid does
            eps = np.eye(len(s1)) * 1e-6
            covmean = linalg.sqrtm((s1 + eps) @ (s2 + eps))
    covmean = covmean.real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


def read_generated(domain_dir) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """Read DIR/{d}_{NNN}.png -> (images (N, 3, 28, 28) in [-1, 1], labels (N,), names)."""
    domain_dir = Path(domain_dir)
    if not domain_dir.is_dir():
        raise DifflabError(f"{domain_dir}: folder of generated images not found")
    files = sorted(p for p in domain_dir.iterdir() if NAME_RE.match(p.name))
    if not files:
        raise DifflabError(f"{domain_dir}: no images named {{digit}}_{{NNN}}.png")
    imgs = np.stack([load_image(p, size=28) for p in files])
    labels = torch.tensor([int(NAME_RE.match(p.name).group(1)) for p in files])
    return to_model_range(imgs), labels, [p.name for p in files]


def score(model, generated: torch.Tensor, labels: torch.Tensor, real: torch.Tensor, reference: torch.Tensor,
          real_labels: torch.Tensor | None = None) -> dict:
    """Score generated images (N, 3, 28, 28) in [-1, 1] with intended labels (N,) against held-out real
    images `real` (M, 3, 28, 28) of the same classes, in `model`'s (a DigitClassifier) features: accuracy,
    per-class accuracy, Fréchet generated vs real and, as its floor, `reference` (other real images, as many
    as generated: the same sample sizes) vs real. With `real_labels` (M,) also the classifier's accuracy on
    the real images (`real_acc`): how far its verdicts can be trusted."""
    pred, feats = predict(model, generated)
    rpred, rfeats = predict(model, real)
    _, reffeats = predict(model, reference)
    per_class = {int(c): accuracy(pred[labels == c], labels[labels == c]) for c in labels.unique()}
    wrong = pred[pred != labels]
    out = {"correct": int((pred == labels).sum()), "total": len(labels),
           "acc": accuracy(pred, labels), "per_class_acc": per_class,
           "confused_with": {int(c): int((wrong == c).sum()) for c in wrong.unique()},
           "fd_generated_vs_real": frechet_distance(feats.numpy(), rfeats.numpy()),
           "fd_real_vs_real": frechet_distance(reffeats.numpy(), rfeats.numpy()),
           "n_generated": len(labels), "n_real": len(real)}
    if real_labels is not None:
        out["real_acc"] = accuracy(rpred, real_labels)
    return out


def evaluate(out_dir, classifiers: dict[str, str] | None = None, data_root=None, seed: int = 0,
             reference_size: int = 1000, device: str = "auto") -> dict:
    """Per-domain results dict; also writes OUT/eval.json. The classifiers run on `device`.

    The real-vs-real Fréchet floor compares as many real training-split images as there are generated
    ones (drawn from a synthesised set of `reference_size`) with the val split, so both distances use the
    same sample sizes.
    """
    resolve_device(device)  # a bad --device fails before any work
    out_dir = Path(out_dir)
    results: dict = {"domains": {}}
    for m in DOMAINS:
        path = (classifiers or {}).get(m) or default_classifier_path(m)
        clf, meta = load_classifier(path, device)
        x, y, _ = read_generated(out_dir / m)
        val = load_domain(m, "val", root=data_root, seed=seed)
        # real-vs-real floor with the same sample sizes as generated-vs-real
        ref = load_domain(m, "train", root=data_root, seed=seed, size=reference_size)
        idx = np.random.default_rng(0).choice(len(ref), size=min(len(x), len(ref)), replace=False)
        r = score(clf, x, y, to_model_range(val.images), to_model_range(ref.images[idx]),
                  torch.from_numpy(val.labels))
        results["domains"][m] = {
            "correct": r["correct"], "total": r["total"], "acc": r["acc"], "real_val_acc": r["real_acc"],
            "fd_generated_vs_real": r["fd_generated_vs_real"], "fd_real_vs_real": r["fd_real_vs_real"],
            "per_digit_acc": r["per_class_acc"], "classifier": str(path),
        }
    accs = [r["acc"] for r in results["domains"].values()]
    results["mean_acc"] = sum(accs) / len(accs)
    with atomic_path(out_dir / "eval.json") as tmp:
        tmp.write_text(json.dumps(results, indent=2))
    return results


def format_results(results: dict) -> str:
    lines = []
    for m, r in results["domains"].items():
        lines.append(f"{PRETTY[m]} acc = {r['acc']:.4f} (correct/total = {r['correct']}/{r['total']})   "
                     f"real val acc = {r['real_val_acc']:.4f}   "
                     f"Fréchet gen-vs-real = {r['fd_generated_vs_real']:.3f} "
                     f"(real-vs-real = {r['fd_real_vs_real']:.3f}, lower is better)")
    lines.append(f"mean acc = {results['mean_acc']:.4f}")
    return "\n".join(lines)
