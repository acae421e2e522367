"""CLIP zero-shot throughput: batched inference with cached class-text embeddings vs a naive loop.

Random-weight models only (no real weights on this machine): the tiny test model and the exact
ViT-B/32 architecture of openai/clip-vit-base-patch32 (151M parameters). Timings do not depend on the
weight values. "batched" = encode the C x T prompts once, then images in batches, then one matmul;
"naive" = for every image, encode all C prompts again and the image alone (batch 1).

    nice -n 19 env OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_clip.py [--note "..."]
Writes benchmarks/results/clip.json and prints a table.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import _malloc  # benchmarks/_malloc.py: re-executes with the glibc allocator settings

_malloc.ensure()

import numpy as np  # noqa: E402
import torch  # noqa: E402
from _record import write_record  # noqa: E402  (benchmarks/_record.py)
from PIL import Image  # noqa: E402

from difflab.clip.prompts import ENSEMBLE, SINGLE, class_embeddings  # noqa: E402
from difflab.clip.tiny import tiny_clip_config  # noqa: E402
from difflab.clip.zeroshot import classify  # noqa: E402
from difflab.models.clip import ClipScorer  # noqa: E402
from difflab.models.clip_vocab import write_clip_tokenizer  # noqa: E402
from difflab.runtime import finish_machine, machine  # noqa: E402

CLASSES = [f"class_{i}" for i in range(50)]  # 50 classes, as in the CIFAR-100-style homework set


def build_scorer(size: str, tok_dir: Path, batch_size: int) -> ClipScorer:
    from transformers import CLIPImageProcessorPil, CLIPModel, CLIPTokenizer

    config = tiny_clip_config(size)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = CLIPModel(config)
    res = config.vision_config.image_size
    processor = CLIPImageProcessorPil(size={"shortest_edge": res}, crop_size={"height": res, "width": res})
    return ClipScorer(model, CLIPTokenizer.from_pretrained(tok_dir), processor, batch_size=batch_size)


def batched(scorer, images, templates) -> tuple[torch.Tensor, float, float]:
    t0 = time.perf_counter()
    text = class_embeddings(scorer, CLASSES, templates)
    t1 = time.perf_counter()
    logits = classify(scorer, scorer.embed_images(images), text)
    return logits, t1 - t0, time.perf_counter() - t0


def naive(scorer, images, templates) -> tuple[torch.Tensor, float]:
    t0 = time.perf_counter()
    rows = []
    for im in images:
        text = class_embeddings(scorer, CLASSES, templates)  # recomputed for every image
        rows.append(classify(scorer, scorer.embed_pixels(scorer.pixel_values([im])), text))
    return torch.cat(rows), time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="tiny,vit-b-32")
    ap.add_argument("--n-tiny", type=int, default=512)
    ap.add_argument("--n-vit", type=int, default=64)
    ap.add_argument("--naive-tiny", type=int, default=32)
    ap.add_argument("--naive-vit", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--note", default="", help="what else ran on the machine (recorded in the JSON)")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "clip.json"))
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    info = machine(note=args.note)  # its load average at start: above the core count = other work competed
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tok_dir = write_clip_tokenizer(tmp)
        for size in args.sizes.split(","):
            n, n_naive = (args.n_tiny, args.naive_tiny) if size == "tiny" else (args.n_vit, args.naive_vit)
            images = [Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)) for _ in range(n)]
            scorer = build_scorer(size, tok_dir, args.batch_size)
            params = sum(p.numel() for p in scorer.model.parameters())
            batched(scorer, images[:4], list(SINGLE))  # warm-up (allocator, first-call costs)
            for name, templates in (("single", list(SINGLE)), ("ensemble", list(ENSEMBLE))):
                k = n_naive if name == "single" else max(1, n_naive // 3)  # naive ensemble is slow
                logits, t_text, t_all = batched(scorer, images, templates)
                ref, t_naive = naive(scorer, images[:k], templates)
                # same numbers both ways (batching must not change results)
                assert torch.allclose(ref, logits[:k], atol=1e-3), (ref - logits[:k]).abs().max()
                rows.append({"model": size, "params_M": round(params / 1e6, 1), "classes": len(CLASSES),
                             "templates": len(templates), "images": n, "batch_size": args.batch_size,
                             "text_s": round(t_text, 3), "batched_img_per_s": round(n / t_all, 2),
                             "image_only_img_per_s": round(n / (t_all - t_text), 2),
                             "naive_images": k, "naive_img_per_s": round(k / t_naive, 3),
                             "speedup": round((n / t_all) / (k / t_naive), 1)})
                print(rows[-1], flush=True)
            del scorer
    finish_machine(info)
    cols = ["model", "params_M", "templates", "images", "text_s", "batched_img_per_s", "image_only_img_per_s",
            "naive_img_per_s", "speedup"]
    print("\n| " + " | ".join(cols) + " |\n|" + "---|" * len(cols))
    for r in rows:
        print("| " + " | ".join(str(r[c]) for c in cols) + " |")
    print(f"\nmachine: {info}")
    write_record(args.out, {"benchmark": "clip_zeroshot_throughput", "machine": info, "rows": rows})


if __name__ == "__main__":
    main()
