"""Prompt templates and per-class text embeddings (single template or an ensemble, CLIP paper sec. 3.1.4).

An ensemble averages the *normalised* text embeddings of every template filled with the class words,
then normalises the mean again: the class's "prototype" direction on the unit sphere. It is computed
once per class, so classifying N images costs N image passes plus C x T text passes, not N x C x T.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch

from difflab.errors import DifflabError

SINGLE = ("a photo of a {}.",)

# Our own ensemble for natural photos (CIFAR/ImageNet-like): covers the ways such photos differ -- blur and
# resolution (CIFAR images are 32x32), framing, lighting, object size and count, and non-photo renderings.
ENSEMBLE = (
    "a photo of a {}.",
    "a blurry photo of a {}.",
    "a low resolution photo of a {}.",
    "a pixelated photo of a {}.",
    "a close-up photo of a {}.",
    "a cropped photo of a {}.",
    "a bright photo of a {}.",
    "a dark photo of a {}.",
    "a photo of a small {}.",
    "a photo of a large {}.",
    "a photo of many {}.",
    "a good photo of a {}.",
    "a bad photo of a {}.",
    "a photo of the {} in the wild.",
    "a snapshot of a {}.",
    "a drawing of a {}.",
    "a painting of a {}.",
    "a toy {}.",
)


def class_to_words(name: str) -> str:
    """Turn a label into words for a prompt: 'willow_tree' -> 'willow tree', '  sweet_pepper ' -> 'sweet pepper'."""
    words = re.sub(r"\s+", " ", str(name).replace("_", " ")).strip()
    if not words:
        raise DifflabError(f"prompts.py: class name {name!r} has no words")
    return words


def load_templates(spec: str) -> list[str]:
    """'single', 'ensemble', or a text file with one template per line (blank and '#' lines skipped).

    Every template must contain exactly one '{}', where the class words go.
    """
    if spec == "single":
        return list(SINGLE)
    if spec == "ensemble":
        return list(ENSEMBLE)
    path = Path(spec)
    if not path.is_file():
        raise DifflabError(f"prompts.py: --templates {spec!r} is neither 'single', 'ensemble' nor a file")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise DifflabError(f"prompts.py: {path}: cannot read templates ({e})") from None
    templates = []
    for i, line in enumerate(lines, 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        stray = set("{}") & set(line.replace("{}", "", 1))  # e.g. '{0}' or '{class}': a likely typo
        if line.count("{}") != 1 or stray:
            raise DifflabError(f"prompts.py: {path}:{i}: a template needs exactly one '{{}}' for the class, "
                               f"got {line!r}")
        templates.append(line)
    if not templates:
        raise DifflabError(f"prompts.py: {path}: no templates (one per line, each with '{{}}')")
    return templates


def fill(templates: list[str], classnames: list[str]) -> list[str]:
    """C x T prompts, class-major: prompt [c * T + t] = templates[t] with the words of class c."""
    return [t.replace("{}", class_to_words(c)) for c in classnames for t in templates]


def ensemble_embeddings(per_prompt: torch.Tensor, n_templates: int) -> torch.Tensor:
    """(C * T, D) normalised prompt embeddings, class-major -> (C, D) normalised class embeddings.

    With T == 1 this is the identity (the single-template embedding itself).
    """
    if per_prompt.ndim != 2 or per_prompt.shape[0] % n_templates:
        raise DifflabError(f"prompts.py: {tuple(per_prompt.shape)} embeddings do not split into "
                           f"{n_templates} templates per class")
    mean = per_prompt.reshape(-1, n_templates, per_prompt.shape[1]).mean(dim=1)
    return torch.nn.functional.normalize(mean, dim=-1)


def class_embeddings(scorer, classnames: list[str], templates: list[str],
                     progress: bool = False) -> torch.Tensor:
    """(C, D) L2-normalised text embedding per class; all C x T prompts go through `scorer` in batches."""
    prompts = fill(templates, classnames)
    return ensemble_embeddings(scorer.embed_texts(prompts, progress=progress), len(templates))
