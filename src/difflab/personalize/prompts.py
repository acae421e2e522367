"""The PROMPTS.json format shared by `ti generate` and `ti score`.

    {"0": {"src_image": "dog", "token_name": "<new1>",
           "prompt": ["a {} in the jungle", "a <new1> on the beach"],
           "prompt_4_clip_eval": ["a dog in the jungle", "a dog on the beach"],
           "baseline": [[79, 34], [74, 35]]},
     "1": {...}}

- key: names the concept; its reference photos are `CONCEPTS/<key>/` (or `CONCEPTS/<src_image>/`).
- prompt: what SD draws; `{}` is replaced by `token_name` (a prompt may also name tokens directly).
- prompt_4_clip_eval: one plain-text description per prompt for the CLIP text score (CLIP does not
  know the learned token).
- baseline: one [image score, text score] pair per prompt; a prompt passes when both top-5 means reach it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from difflab.errors import DifflabError
from difflab.io import read_json

REQUIRED = ("src_image", "token_name", "prompt", "prompt_4_clip_eval", "baseline")


@dataclass
class Concept:
    key: str
    src_image: str
    token_name: str
    prompts: list[str]            # as written in the file
    eval_texts: list[str]
    baseline: list[tuple[float, float]]

    def prompt(self, i: int) -> str:
        """The i-th prompt with `{}` replaced by the learned token."""
        return self.prompts[i].replace("{}", self.token_name)


def _str_list(value, where: str) -> list[str]:
    if not isinstance(value, list) or not value or not all(isinstance(s, str) and s.strip() for s in value):
        raise DifflabError(f"{where}: must be a non-empty list of non-empty strings")
    return value


def load_prompts(path) -> list[Concept]:
    """Read and validate PROMPTS.json -> concepts in key order; DifflabError names the bad entry."""
    path = Path(path)
    data = read_json(path, "prompt file")  # a key written twice is refused, not silently dropped
    if not isinstance(data, dict) or not data:
        raise DifflabError(f'{path}: expected a non-empty object {{"0": {{...}}, ...}}')
    concepts = []
    for key, entry in data.items():
        where = f"{path}[{key!r}]"
        if not isinstance(entry, dict):
            raise DifflabError(f"{where}: must be an object with keys {', '.join(REQUIRED)}")
        missing = [k for k in REQUIRED if k not in entry]
        if missing:
            raise DifflabError(f"{where}: missing key(s) {', '.join(missing)}")
        if any(c in key for c in "/\\") or key in (".", "..") or not key.strip():
            raise DifflabError(f"{where}: key must be usable as a folder name")
        for name in ("src_image", "token_name"):
            if not isinstance(entry[name], str) or not entry[name].strip():
                raise DifflabError(f"{where}.{name}: must be a non-empty string")
        prompts = _str_list(entry["prompt"], f"{where}.prompt")
        evals = _str_list(entry["prompt_4_clip_eval"], f"{where}.prompt_4_clip_eval")
        base = entry["baseline"]
        ok = isinstance(base, list) and all(
            isinstance(p, list) and len(p) == 2 and all(isinstance(v, (int, float)) for v in p) for p in base)
        if not ok:
            raise DifflabError(f"{where}.baseline: must be a list of [image score, text score] pairs")
        if not len(prompts) == len(evals) == len(base):
            raise DifflabError(f"{where}: prompt, prompt_4_clip_eval and baseline need one entry per prompt "
                               f"(got {len(prompts)}, {len(evals)}, {len(base)})")
        concepts.append(Concept(key, entry["src_image"], entry["token_name"], prompts, evals,
                                [(float(a), float(b)) for a, b in base]))
    return concepts


def image_path(out_dir, key: str, prompt_index: int, k: int) -> Path:
    """OUT/<key>/<prompt_index>/source<key>_prompt<prompt_index>_<k>.png"""
    return Path(out_dir) / key / str(prompt_index) / f"source{key}_prompt{prompt_index}_{k}.png"
