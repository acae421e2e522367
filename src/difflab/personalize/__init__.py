"""Textual inversion for Stable Diffusion v1.x: learn new tokens, generate, score with CLIP, compose.

SD itself is loaded by `difflab.models.sd` and scored with `difflab.models.clip.ClipScorer`.

Modules (all import diffusers/transformers lazily, inside functions):
    tiny.py        random-weight SD pipelines built from configs (tests, benchmarks)
    embeddings.py  learned-embedding files (diffusers and Automatic1111 formats), adding tokens
    train.py       the embedding trainer (only the new rows change)
    prompts.py     the PROMPTS.json format
    generate.py    prompt file -> image folder layout
    score.py       CLIP image/text scores, top-5 ranking, PASS/FAIL against a baseline
    compose.py     several concepts in one image: masked multi-path sampling
"""
