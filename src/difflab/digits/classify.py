"""Train the per-domain evaluation classifiers; predict and extract features (their files: models/digits.py)."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from difflab.checks import check_count, check_number, check_seed
from difflab.data import load_domain, to_model_range
from difflab.device import module_device, resolve_device
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


def train_classifier(domain: str, out_path, epochs: int = 8, batch_size: int = 128, lr: float = 2e-3,
                     seed: int = 0, data_root=None, train_size: int = 16000, progress: bool = True,
                     device: str = "auto") -> tuple[DigitClassifier, float]:
    """Train on the domain's train split on `device`; returns (model, accuracy on the val split); saves
    atomically. Batches and augmentation are drawn on the CPU (one CPU generator: the same batches on every
    device) and moved; the model stays on `device`."""
    for name, value in (("epochs", epochs), ("batch_size", batch_size), ("train_size", train_size)):
        check_count(name, value)
    check_number("lr", lr, 0, 1, low_open=True)
    check_seed("seed", seed)
    dev = resolve_device(device)
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    tr = load_domain(domain, "train", root=data_root, size=train_size, seed=seed)
    va = load_domain(domain, "val", root=data_root, seed=seed)
    x, y = to_model_range(tr.images), torch.from_numpy(tr.labels)
    xv, yv = to_model_range(va.images), torch.from_numpy(va.labels)
    model = DigitClassifier().to(dev)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    steps = epochs * (len(x) // batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps)
    bar = tqdm(total=steps, desc=f"classifier {domain}", disable=not progress, dynamic_ncols=True)
    for _ in range(epochs):
        model.train()
        perm = torch.randperm(len(x), generator=g)
        for i in range(len(x) // batch_size):
            idx = perm[i * batch_size:(i + 1) * batch_size]
            loss = F.cross_entropy(model(augment(x[idx], g).to(dev)), y[idx].to(dev), label_smoothing=0.05)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.3f}")
        val_acc = (predict(model, xv)[0] == yv).float().mean().item()
        bar.set_postfix(val_acc=f"{val_acc:.4f}")
    bar.close()
    save_classifier(out_path, model, {"domain": domain, "val_acc": val_acc, "epochs": epochs, "seed": seed,
                                      "train_size": len(x)})
    return model.eval(), val_acc


def real_features(domain: str, model: DigitClassifier, split: str = "val", data_root=None, seed: int = 0
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(features (N, D), predictions (N,), labels (N,)) of the real images of a split."""
    ds = load_domain(domain, split, root=data_root, seed=seed, size=1000 if split == "train" else None)
    preds, feats = predict(model, to_model_range(ds.images))
    return feats.numpy(), preds.numpy(), ds.labels
