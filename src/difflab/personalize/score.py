"""Score a generated layout with CLIP: image score vs. the concept's photos, text score vs. a description.

For every prompt folder OUT/<key>/<i>/ with N images:
    image score  = mean over the concept's reference photos of 100 x cos(image, photo)
    text score   = 100 x cos(image, prompt_4_clip_eval[i])
    rank images by image + 2.5 x text, keep the top 5, average each score over them;
    PASS when the top-5 image mean >= baseline[i][0] and the top-5 text mean >= baseline[i][1].
The CLIP model is `difflab.models.clip.ClipScorer` (the same wrapper as the zero-shot job).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from difflab.errors import DifflabError
from difflab.io import atomic_path, image_files, open_image
from difflab.personalize.prompts import Concept, image_path, load_prompts

TEXT_WEIGHT = 2.5
TOP_K = 5


@dataclass
class PromptScore:
    key: str
    prompt_index: int
    image: float          # top-k mean image score, 100 x cosine
    text: float           # top-k mean text score, 100 x cosine
    baseline: tuple[float, float]
    top: list[int]        # indices k of the top images, best first
    passed: bool


def reference_images(concepts_dir, concept: Concept) -> list:
    """PIL photos in CONCEPTS/<key>/ (or CONCEPTS/<src_image>/ when there is no <key> folder)."""
    root = Path(concepts_dir)
    folder = root / concept.key
    if not folder.is_dir() and (root / concept.src_image).is_dir():
        folder = root / concept.src_image
    if not folder.is_dir():
        raise DifflabError(f"{root / concept.key}: concept folder not found")
    paths = image_files(folder)
    if not paths:
        raise DifflabError(f"{folder}: concept folder has no images")
    return [open_image(p) for p in paths]


def generated_images(out_dir, concept: Concept, i: int) -> list:
    """The N images of prompt i, in k order (k = 0, 1, ... until the first missing file)."""
    paths, k = [], 0
    while image_path(out_dir, concept.key, i, k).is_file():
        paths.append(image_path(out_dir, concept.key, i, k))
        k += 1
    if not paths:
        raise DifflabError(f"{image_path(out_dir, concept.key, i, 0).parent}: no generated images "
                           "(run `difflab ti generate` first)")
    return [open_image(p) for p in paths]


def rank_top(image_scores: torch.Tensor, text_scores: torch.Tensor, k: int = TOP_K,
             text_weight: float = TEXT_WEIGHT) -> tuple[float, float, list[int]]:
    """(N,) scores -> (mean image score, mean text score, indices) over the k best by image + w x text."""
    combined = image_scores + text_weight * text_scores
    top = torch.argsort(combined, descending=True, stable=True)[:k]
    return image_scores[top].mean().item(), text_scores[top].mean().item(), top.tolist()


def score_layout(scorer, concepts: list[Concept], out_dir, concepts_dir, k: int = TOP_K,
                 text_weight: float = TEXT_WEIGHT) -> list[PromptScore]:
    """Scores of every prompt folder of `concepts` with a `ClipScorer`."""
    results = []
    for c in concepts:
        refs = scorer.embed_images(reference_images(concepts_dir, c))
        for i, text in enumerate(c.eval_texts):
            emb = scorer.embed_images(generated_images(out_dir, c, i))
            img = scorer.image_image_score(emb, refs)
            txt = scorer.image_text_score(emb, [text] * len(emb))
            mi, mt, top = rank_top(img, txt, k, text_weight)
            b = c.baseline[i]
            results.append(PromptScore(c.key, i, mi, mt, b, top, mi >= b[0] and mt >= b[1]))
    return results


def format_report(results: list[PromptScore]) -> str:
    lines = [f"{'key':>6} {'prompt':>6} {'image':>7} {'text':>7} {'baseline':>14}  result"]
    for r in results:
        base = f"({r.baseline[0]:g}, {r.baseline[1]:g})"
        lines.append(f"{r.key:>6} {r.prompt_index:>6} {r.image:7.2f} {r.text:7.2f} {base:>14}  "
                     f"{'PASS' if r.passed else 'FAIL'}")
    lines.append(f"passed {sum(r.passed for r in results)}/{len(results)}")
    return "\n".join(lines)


def score(prompts_file, out_dir, concepts_dir, clip_dir, report=None, device: str = "auto"):
    """`difflab ti score`: returns (results, report text); writes the scores as JSON to `report`."""
    from difflab.models.clip import ClipScorer

    concepts = load_prompts(prompts_file)
    scorer = ClipScorer.from_pretrained(clip_dir, device=device)
    results = score_layout(scorer, concepts, out_dir, concepts_dir)
    text = format_report(results)
    report = Path(report) if report else Path(out_dir) / "scores.json"
    with atomic_path(report) as tmp:
        tmp.write_text(json.dumps({"text_weight": TEXT_WEIGHT, "top_k": TOP_K,
                                   "results": [asdict(r) for r in results]}, indent=2))
    return results, text
