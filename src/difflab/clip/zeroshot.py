"""Zero-shot classification of a labelled image folder with CLIP, and the metrics of its report.

Pipeline: scan the folder (dataset.py) -> one text embedding per class (prompts.py, cached for the whole
run) -> image embeddings in batches -> logits = exp(logit_scale) * cos, exactly `logits_per_image` of
transformers' CLIPModel -> top-k accuracy, per-class accuracy, confusions and example cases.

Unreadable images are *skipped and counted* (listed in the report), not fatal: one bad file in a folder
of thousands should not throw away the run; a folder where every image is unreadable is refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from difflab.clip.config import ZeroShotConfig
from difflab.clip.dataset import LabelledFolder, scan_folder
from difflab.clip.prompts import class_embeddings, load_templates
from difflab.errors import DifflabError
from difflab.io import open_image


@dataclass
class ZeroShotResult:
    """logits (N, C) float32 for the N readable images; labels (N,) true class indices."""

    folder: LabelledFolder
    files: list[Path]
    labels: torch.Tensor
    logits: torch.Tensor
    skipped: list[tuple[str, str]]  # (file, reason)
    templates: list[str]
    logit_scale: float


def embed_folder(scorer, files: list[Path], batch_size: int, progress: bool = True):
    """(M, D) image embeddings of the readable files, their indices into `files`, and the skipped ones."""
    feats, kept, skipped = [torch.zeros(0, scorer.dim)], [], []
    bar = tqdm(total=len(files), desc="CLIP zero-shot", unit="img", disable=not progress)
    for start in range(0, len(files), batch_size):
        batch, idx = [], []
        for i in range(start, min(start + batch_size, len(files))):
            try:  # decoded whole now, so a truncated image fails here, not inside a batch
                batch.append(open_image(files[i]))
                idx.append(i)
            except DifflabError as e:  # "FILE: why": the file is the report's own column
                skipped.append((str(files[i]), str(e).removeprefix(f"{files[i]}: ")))
        if batch:
            feats.append(scorer.embed_pixels(scorer.pixel_values(batch)))
            kept += idx
        bar.update(min(batch_size, len(files) - start))
    bar.close()
    return torch.cat(feats), kept, skipped


def classify(scorer, image_embeds: torch.Tensor, text_embeds: torch.Tensor) -> torch.Tensor:
    """(N, D), (C, D) normalised -> (N, C) logits = exp(logit_scale) * cosine, as CLIPModel computes them."""
    return scorer.logit_scale * image_embeds @ text_embeds.T


def run_zeroshot(config: ZeroShotConfig, scorer=None, progress: bool = True) -> ZeroShotResult:
    """Scan, embed, classify. `scorer` (a ClipScorer) may be passed to reuse a loaded model."""
    from difflab.models.clip import ClipScorer

    config.validate()
    folder = scan_folder(config.images_dir, config.labels)
    templates = load_templates(config.templates)
    if scorer is None:
        scorer = ClipScorer.from_pretrained(config.model, device=config.device, batch_size=config.batch_size)
    text = class_embeddings(scorer, folder.classnames, templates, progress=progress)  # once per class
    feats, kept, skipped = embed_folder(scorer, folder.files, config.batch_size, progress=progress)
    if not kept:
        raise DifflabError(f"zeroshot.py: {config.images_dir}: none of the {len(folder.files)} images "
                           f"could be read (first: {skipped[0][1]})")
    return ZeroShotResult(folder, [folder.files[i] for i in kept],
                          torch.tensor([folder.labels[i] for i in kept]), classify(scorer, feats, text),
                          skipped, templates, scorer.logit_scale)


def topk_accuracy(logits: torch.Tensor, labels: torch.Tensor, k: int) -> float:
    """Fraction of rows whose true label is among the k largest logits (k capped at C).

    Count / total in Python floats: a float32 mean would put 0.20000000298023224 for 8/40 into report.json.
    """
    k = min(k, logits.shape[1])
    hits = int((logits.topk(k, dim=1).indices == labels[:, None]).any(dim=1).sum())
    return hits / len(labels)


def true_rank(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """(N,) rank of the true class among the logits, 1 = top-1: says how far off a failure was."""
    return (logits > logits.gather(1, labels[:, None])).sum(dim=1) + 1


def confusion_matrix(pred: torch.Tensor, labels: torch.Tensor, n_classes: int) -> torch.Tensor:
    """(C, C) int64 counts, rows = true class, columns = predicted class."""
    return torch.bincount(labels * n_classes + pred, minlength=n_classes ** 2).reshape(n_classes, n_classes)


def summarise(result: ZeroShotResult, top_k: int = 5, n_cases: int = 5, n_pairs: int = 10) -> dict:
    """The JSON-ready report: accuracies, per-class accuracy, most confused pairs, example cases."""
    names, logits, labels = result.folder.classnames, result.logits, result.labels
    k = min(top_k, len(names))  # with fewer than k classes, top-k would be trivially 100%
    probs = logits.softmax(dim=1)
    conf, pred = probs.max(dim=1)
    correct = pred == labels
    cm = confusion_matrix(pred, labels, len(names))
    per_class = {}
    for c, name in enumerate(names):
        n = int(cm[c].sum())
        per_class[name] = {"n": n, "correct": int(cm[c, c]), "accuracy": float(cm[c, c]) / n if n else None}
    off = cm.clone().fill_diagonal_(0)
    order = torch.argsort(off.flatten(), descending=True, stable=True)[:n_pairs]
    pairs = [{"true": names[i // len(names)], "predicted": names[i % len(names)], "count": int(off.flatten()[i])}
             for i in order.tolist() if off.flatten()[i] > 0]
    rank = true_rank(logits, labels)

    def case(i: int) -> dict:
        return {"file": str(result.files[i]), "true": names[int(labels[i])], "predicted": names[int(pred[i])],
                "confidence": float(conf[i]), "true_prob": float(probs[i, labels[i]]),
                "true_rank": int(rank[i])}

    # the most confident successes, and the most confident failures (the surprising ones)
    by_conf = torch.argsort(conf, descending=True, stable=True).tolist()
    return {
        "n_images": len(result.files), "n_classes": len(names), "layout": result.folder.layout,
        "top1": topk_accuracy(logits, labels, 1), f"top{k}": topk_accuracy(logits, labels, k), "top_k": k,
        "logit_scale": result.logit_scale, "templates": result.templates,
        "n_skipped": len(result.skipped), "skipped": [{"file": f, "reason": r} for f, r in result.skipped],
        "per_class": per_class, "confused_pairs": pairs,
        "successes": [case(i) for i in by_conf if correct[i]][:n_cases],
        "failures": [case(i) for i in by_conf if not correct[i]][:n_cases],
    }
