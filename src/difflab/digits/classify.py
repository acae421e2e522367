"""Train the per-domain evaluation classifiers; predict and extract features (their files: models/digits.py)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from difflab.checks import check_count, check_number, check_seed
from difflab.data import DOMAINS, load_domain, to_model_range
from difflab.device import module_device, resolve_device
from difflab.errors import DifflabError
from difflab.models.classifier import DigitClassifier
from difflab.models.digits import save_classifier


def augment(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Random shifts (up to 2 px), contrast/brightness jitter and noise; x (B, 3, 28, 28) in [-1, 1].
    Makes the classifier robust to the small artefacts of generated images."""
    B = x.shape[0]
    pad = F.pad(x, (2, 2, 2, 2), mode="replicate")
    dx, dy = torch.randint(0, 5, (2,), generator=g).tolist()  # one shift per batch: cheap, enough
    x = pad[:, :, dy:dy + 28, dx:dx + 28]
    c = 1 + 0.2 * (torch.rand(B, 1, 1, 1, generator=g) - 0.5)
    b = 0.2 * (torch.rand(B, 1, 1, 1, generator=g) - 0.5)
    x = x * c + b + 0.05 * torch.rand(B, 1, 1, 1, generator=g) * torch.randn(x.shape, generator=g)
    return x.clamp(-1, 1)


@torch.no_grad()
def predict(model: DigitClassifier, images: torch.Tensor, batch_size: int = 500
            ) -> tuple[torch.Tensor, torch.Tensor]:
    """images (N, 3, 28, 28) in [-1, 1] (any device) -> (predicted labels (N,), penultimate features (N, D)),
    both on the CPU. Runs on the model's device, in float32 (features feed Fréchet distances)."""
    model.eval()
    device = module_device(model)
    preds, feats = [], []
    for i in range(0, len(images), batch_size):
        f = model.features(images[i:i + batch_size].to(device))
        feats.append(f.cpu())
        preds.append(model.head(f).argmax(1).cpu())
    return torch.cat(preds), torch.cat(feats)


def accuracy(pred: torch.Tensor, labels: torch.Tensor) -> float:
    """correct / total in Python floats: a float32 mean would write 0.8500000238418579 for 17/20 into JSON."""
    return int((pred == labels).sum()) / len(labels)


@dataclass
class ClassifierTrainConfig:
    """Settings of `difflab digits train-classifier` (the CLI's flags come from these fields)."""

    domain: str  # mnistm | svhn
    out: str | None = None  # None: the shipped classifier's file (models.digits.default_classifier_path)
    # 10: what `digits train-classifier` has always run (docs/RESULTS.md's SVHN classifier); the Python
    # API used to default to 8, a second default for the same job
    epochs: int = 10
    batch_size: int = 128
    lr: float = 2e-3
    train_size: int = 16000  # synthesised training images (offline recipes)
    seed: int = 0
    data_root: str | None = None  # None: offline recipes
    device: str = "auto"  # auto | cpu | cuda | cuda:N (difflab.device.resolve_device)

    def __post_init__(self):
        """Checked when built, so the CLI and the API share one check, before any data is made."""
        if self.domain not in DOMAINS:
            raise DifflabError(f"--domain must be one of {', '.join(DOMAINS)}, got {self.domain!r}")
        for name in ("epochs", "batch_size", "train_size"):
            check_count(name, getattr(self, name))
        check_number("lr", self.lr, 0, 1, low_open=True)
        check_seed("seed", self.seed)

    def out_path(self) -> Path:
        from difflab.models.digits import default_classifier_path

        return Path(self.out) if self.out else default_classifier_path(self.domain)


def fit(model: DigitClassifier, x: torch.Tensor, y: torch.Tensor, epochs: int, batch_size: int, lr: float,
        g: torch.Generator, device, progress: bool = False, desc: str = "classifier", after_epoch=None
        ) -> DigitClassifier:
    """The evaluation classifiers' optimisation (the shipped ones and the style classifiers): AdamW (weight
    decay 1e-4), one-cycle learning rate, label smoothing 0.05, `augment` on every batch.

    x (N, 3, 28, 28) in [-1, 1] and y (N,) int64 on the CPU; batches and augmentation drawn with the CPU
    generator g (the same batches on every device), then moved to `device` where the model is.
    after_epoch(model) -> dict shown on the progress bar (e.g. the validation accuracy), optional.
    Returns the model, left in train mode."""
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    per_epoch = max(1, len(x) // batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=epochs * per_epoch)
    bar = tqdm(total=epochs * per_epoch, desc=desc, disable=not progress, dynamic_ncols=True)
    for _ in range(epochs):
        model.train()
        perm = torch.randperm(len(x), generator=g)
        for i in range(per_epoch):
            idx = perm[i * batch_size:(i + 1) * batch_size]
            loss = F.cross_entropy(model(augment(x[idx], g).to(device)), y[idx].to(device), label_smoothing=0.05)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.3f}")
        if after_epoch is not None:
            bar.set_postfix(after_epoch(model))
    bar.close()
    return model


def train_classifier(cfg: ClassifierTrainConfig, progress: bool = True) -> tuple[DigitClassifier, float]:
    """Train on the domain's train split on `cfg.device`; returns (model, accuracy on the val split); saves
    atomically to `cfg.out_path()`. Batches and augmentation are drawn on the CPU (one CPU generator: the
    same batches on every device) and moved; the model stays on the device."""
    domain, epochs, batch_size, lr, seed = cfg.domain, cfg.epochs, cfg.batch_size, cfg.lr, cfg.seed
    data_root, device = cfg.data_root, cfg.device
    dev = resolve_device(device)
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    tr = load_domain(domain, "train", root=data_root, size=cfg.train_size, seed=seed)
    va = load_domain(domain, "val", root=data_root, seed=seed)
    x, y = to_model_range(tr.images), torch.from_numpy(tr.labels)
    xv, yv = to_model_range(va.images), torch.from_numpy(va.labels)
    model = DigitClassifier().to(dev)
    state = {}

    def validate(m):
        state["val_acc"] = accuracy(predict(m, xv)[0], yv)
        return {"val_acc": f"{state['val_acc']:.4f}"}

    fit(model, x, y, epochs, batch_size, lr, g, dev, progress, f"classifier {domain}", validate)
    val_acc = state["val_acc"]
    save_classifier(cfg.out_path(), model, {"domain": domain, "val_acc": val_acc, "epochs": epochs, "seed": seed,
                                            "train_size": len(x)})
    return model.eval(), val_acc


def real_features(domain: str, model: DigitClassifier, split: str = "val", data_root=None, seed: int = 0
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(features (N, D), predictions (N,), labels (N,)) of the real images of a split."""
    ds = load_domain(domain, split, root=data_root, seed=seed, size=1000 if split == "train" else None)
    preds, feats = predict(model, to_model_range(ds.images))
    return feats.numpy(), preds.numpy(), ds.labels
