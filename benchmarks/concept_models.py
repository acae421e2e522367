"""The same concepts drawn by the teacher and by the student: which model `generate --concept` should default to.

Concepts are learned on the teacher (`digits personalize`); ti and lora concepts also apply to the student
distilled from it. This draws each given concept folder with each model at generate's settings for that
model (teacher: DDIM 20, w 3, its guide default; student: 4 steps, w 3), seed 0, and scores the images as
bench_personalize does (accuracy and Fréchet distance by the style's or the symbol's classifier).

    .venv/bin/python benchmarks/concept_models.py /tmp/aug1/concepts/{lcd,blueprint,A}-lora \
        --out benchmarks/results/concept_models.json
(the concept folders: a bench_personalize --work folder's concepts/)
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

import _malloc  # benchmarks/_malloc.py: re-executes with the glibc allocator settings

_malloc.ensure()

from _record import command_line, write_record  # noqa: E402  (benchmarks/_record.py)

from difflab.concepts.concept import concept_meta  # noqa: E402
from difflab.concepts.style_eval import eval_classifier, score_folder  # noqa: E402
from difflab.digits.generate import GenerateConfig, generate  # noqa: E402
from difflab.models.digits import load_digit_model  # noqa: E402
from difflab.runtime import finish_machine, machine  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("concepts", nargs="+", help="concept folders (lora or ti, made on the shipped teacher)")
    ap.add_argument("--models", nargs="+", default=["teacher", "student"])
    ap.add_argument("--per-digit", type=int, default=20, help="a style's images per digit (bench_personalize's)")
    ap.add_argument("--symbol-count", type=int, default=200, help="a symbol's images per domain")
    ap.add_argument("--work", default="/tmp/concept_models")
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    where, rows = machine(), []
    for name in args.models:
        model, schedule, _ = load_digit_model(name)
        for folder in args.concepts:
            meta = concept_meta(folder)
            style = meta["kind"] == "domain"
            # where the images land and what judges them: OUT/NAME/{d}_NNN.png, or the symbol in its domain
            sub, target = (meta["name"], meta["name"]) if style else (meta["domain"], f"symbol-{meta['domain']}")
            out = Path(args.work) / f"{name}-{meta['name']}"
            shutil.rmtree(out, ignore_errors=True)
            cfg = GenerateConfig(per_digit=args.per_digit if style else args.symbol_count, model=name,
                                 concepts=(str(folder),))
            t0 = time.perf_counter()
            generate(out, model, schedule, cfg, overwrite=True, progress=False)
            s = score_folder(target, out / sub, eval_classifier(target)[0])
            rows.append({"model": name, "concept": str(folder), "name": meta["name"], "method": meta["method"],
                         "acc": s["acc"], "fd_generated_vs_real": s["fd_generated_vs_real"],
                         "fd_real_vs_real": s["fd_real_vs_real"], "generate_s": time.perf_counter() - t0})
            print(f"{name:<8} {meta['name']:<10} {meta['method']:<5} acc {s['acc']:.3f}  "
                  f"FD {s['fd_generated_vs_real']:.3f} (real {s['fd_real_vs_real']:.3f})  "
                  f"{rows[-1]['generate_s']:.1f} s", flush=True)
    record = {"command": command_line(), "rows": rows, "machine": finish_machine(where)}
    write_record(args.out, record)
    return 0


if __name__ == "__main__":
    sys.exit(main())
