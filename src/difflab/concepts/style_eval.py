"""Judge digits in a new style, or a new symbol, made by a personalized digit model (issue 12).

Each new style (data/styles.py) gets its own evaluation classifier, trained on synthesised images of that
style and checked on its held-out ('val') images; the symbol gets an 11-way classifier of its domain (the
ten digits + the symbol as class 10). Generated images are then scored like `digits eval` does for the
shipped domains (digits/evaluate.py): accuracy by that classifier, and the Fréchet distance of its
penultimate features to held-out real images, beside the real-vs-real distance at the same sample sizes
(the distance's noise floor).

The classifiers are evaluation tools, not package assets: they are cached under the data cache
(data/datasets.cache_dir()/style_classifiers), keyed by the recipe and training settings.
"""

from __future__ import annotations

import functools
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from difflab.data import load_domain, to_model_range
from difflab.data.styles import RECIPE_VERSION, STYLES, SYMBOL, SYMBOL_DOMAINS, make_style, make_symbol
from difflab.digits.classify import accuracy, fit, predict
from difflab.digits.evaluate import read_generated, score
from difflab.errors import DifflabError
from difflab.io import image_files, load_image
from difflab.models.classifier import ClassifierConfig, DigitClassifier
from difflab.models.digits import load_classifier, save_classifier

SYMBOL_CLASS = 10  # the symbol's label in the 11-way classifier of its domain
CLASSIFIER_VERSION = 1  # bump when the training below changes: the cache key holds it


@dataclass
class EvalClassifierConfig:
    """How an evaluation classifier is trained (the cache key holds every field)."""

    train_size: int = 12000  # synthesised training images (symbol targets: digits; + a tenth as many symbols)
    val_size: int = 1000  # held-out images it is checked on (symbol targets: + a tenth as many symbols)
    epochs: int = 8
    batch_size: int = 128
    lr: float = 2e-3
    seed: int = 0


def target_kind(target: str) -> tuple[str, str]:
    """'lcd' -> ('style', 'lcd'); 'symbol-svhn' -> ('symbol', 'svhn'). One-line error otherwise."""
    if target in STYLES:
        return "style", target
    if target.startswith("symbol-") and target[len("symbol-"):] in SYMBOL_DOMAINS:
        return "symbol", target[len("symbol-"):]
    names = [*STYLES, *(f"symbol-{d}" for d in SYMBOL_DOMAINS)]
    raise DifflabError(f"unknown evaluation target {target!r} (choose from {', '.join(names)})")


def target_data(target: str, split: str, size: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Real images of a target: (images (N, 28, 28, 3) uint8, labels (N,) int64). A style: `size` images,
    size // 10 per digit. A symbol: digits of its domain (the offline recipe, data.load_domain: about `size`
    for 'train', its 1000 for 'val') plus a tenth as many symbols labelled SYMBOL_CLASS, shuffled with `seed`."""
    kind, name = target_kind(target)
    if kind == "style":
        return make_style(name, split, max(1, size // 10), seed)
    digits = load_domain(name, split, size=size if split == "train" else None, seed=seed)
    # a tenth of the digits actually loaded: load_domain rounds sizes (MNIST-M: whole copies of 4000 digits)
    sym = make_symbol(name, split, max(1, len(digits) // 10), seed)
    images = np.concatenate([digits.images, sym])
    labels = np.concatenate([digits.labels, np.full(len(sym), SYMBOL_CLASS)]).astype(np.int64)
    order = np.random.default_rng([seed, 11]).permutation(len(labels))
    return images[order], labels[order]


def fit_classifier(x: torch.Tensor, y: torch.Tensor, num_classes: int, cfg: EvalClassifierConfig,
                   progress: bool = False, desc: str = "classifier") -> DigitClassifier:
    """Train a DigitClassifier on x (N, 3, 28, 28) in [-1, 1], y (N,) int64, on the CPU, with the shipped
    classifiers' optimisation (digits.classify.fit: augmentation, optimiser, schedule)."""
    g = torch.Generator().manual_seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    model = DigitClassifier(ClassifierConfig(num_classes=num_classes))
    fit(model, x, y, cfg.epochs, cfg.batch_size, cfg.lr, g, "cpu", progress, desc)
    return model.eval()


def classifier_path(target: str, cfg: EvalClassifierConfig, cache: Path | None = None) -> Path:
    """Where the target's classifier is cached: the key holds recipe, training version and settings."""
    from difflab.data.datasets import cache_dir

    key = "_".join(f"{v:g}" if isinstance(v, float) else str(v) for v in asdict(cfg).values())
    folder = Path(cache) if cache is not None else cache_dir() / "style_classifiers"
    return folder / f"{target}_r{RECIPE_VERSION}_c{CLASSIFIER_VERSION}_{key}.safetensors"


def eval_classifier(target: str, cfg: EvalClassifierConfig | None = None, cache: Path | None = None,
                    progress: bool = False) -> tuple[DigitClassifier, dict]:
    """(classifier in eval mode on the CPU, meta {target, val_acc, train_s, cached, ...}) for a target:
    loaded from the cache when there, else trained (and its held-out accuracy measured) and cached."""
    cfg = cfg or EvalClassifierConfig()
    target_kind(target)
    path = classifier_path(target, cfg, cache)
    if path.is_file():
        model, meta = load_classifier(path)
        return model, {**meta, "cached": True, "path": str(path)}
    t0 = time.perf_counter()
    x, y = target_data(target, "train", cfg.train_size, cfg.seed)
    num_classes = 11 if target_kind(target)[0] == "symbol" else 10
    model = fit_classifier(to_model_range(x), torch.from_numpy(y), num_classes, cfg, progress, f"classifier {target}")
    train_s = time.perf_counter() - t0
    xv, yv = target_data(target, "val", cfg.val_size, cfg.seed)
    pred, yv = predict(model, to_model_range(xv))[0], torch.from_numpy(yv)
    meta = {"target": target, "val_acc": accuracy(pred, yv), "val_total": len(yv),
            "train_images": len(y), "train_s": train_s, "config": asdict(cfg)}
    if num_classes == 11:  # the two numbers that matter: digits still read, the symbol recognised
        sym = yv == SYMBOL_CLASS
        meta.update(val_digit_acc=accuracy(pred[~sym], yv[~sym]), val_symbol_acc=accuracy(pred[sym], yv[sym]),
                    val_symbols=int(sym.sum()))
    save_classifier(path, model, meta)
    return model, {**meta, "cached": False, "path": str(path)}


def read_images(folder, prefix: str) -> np.ndarray:
    """FOLDER/{prefix}_*.png (e.g. the symbol's generated images) -> (N, 28, 28, 3) uint8, sorted by name."""
    files = [p for p in image_files(folder) if p.name.startswith(f"{prefix}_")]
    if not files:
        raise DifflabError(f"{folder}: no images named {prefix}_*.png")
    return np.stack([load_image(p, size=28) for p in files])


@functools.lru_cache(maxsize=8)  # each method's images are scored against the same real sets: render once
def real_sets(target: str, n_reference: int, val_size: int = 1000, seed: int = 0
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(held-out real images (M, 28, 28, 3) uint8, their labels, `n_reference` other real images) for the
    Fréchet distances: a style's digits, or the symbol alone (SYMBOL_CLASS). The reference images come from
    the train split with another seed: images neither the classifier nor the personalized model saw."""
    kind, name = target_kind(target)
    if kind == "style":
        real, labels = make_style(name, "val", max(1, val_size // 10), seed)
        ref, _ = make_style(name, "train", max(1, -(-n_reference // 10)), seed + 1)
        return real, labels, ref[:n_reference]
    real = make_symbol(name, "val", val_size, seed)
    return real, np.full(len(real), SYMBOL_CLASS, dtype=np.int64), make_symbol(name, "train", n_reference, seed + 1)


def score_folder(target: str, folder, model: DigitClassifier, val_size: int = 1000, seed: int = 0) -> dict:
    """Score a folder of generated images: a style's FOLDER/{d}_{NNN}.png (digits/evaluate.read_generated),
    or the symbol's FOLDER/A_{NNN}.png (`digits generate --concept` layouts)."""
    if target_kind(target)[0] == "style":
        x, y, _ = read_generated(folder)
    else:
        x = to_model_range(read_images(folder, SYMBOL))
        y = torch.full((len(x),), SYMBOL_CLASS)
    real, _, ref = real_sets(target, len(x), val_size, seed)
    return score(model, x, y, to_model_range(real), to_model_range(ref))
