"""Benchmark `difflab digits personalize` (issue 12): two new styles and a new symbol, each learned from 20
images by each method (ti, lora, finetune), then measured.

Targets (data/styles.py, all made offline): "lcd" (seven-segment digits on an LCD panel) and "blueprint"
(MNIST strokes on blue grid paper), each a new domain from 2 images per digit; "A" (the letter, drawn by
the SVHN-style recipe) as a new symbol in the svhn domain from 20 images. For each concept: `personalize`,
then `generate --concept` (the teacher, DDIM 20, guidance 3: generate's defaults), and
- accuracy in the new style by a classifier of that style (for the symbol: the share of generated symbols
  recognised by an 11-way classifier of its domain: ten digits + the symbol; also in the other domain),
- Fréchet distance in that classifier's features to held-out real images of the style, beside real vs
  real at the same sample sizes,
- retained accuracy on the old domains (concept.json), training wall time, concept size on disk.
Base rows: the base model's own MNIST-M and SVHN digits scored by each style's classifier (what the
measurement gives without any personalization). The evaluation classifiers are trained first (or loaded
from the data cache), timed apart; their held-out accuracy is in the JSON and the table.

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/bench_personalize.py [--only lcd,A:ti] [--steps N] [--quick]
        [--guidance 3 2:digit 3:both 2:both:eta=1,steps=50]   # one row per generate setting
                                        # (W[:GUIDE[:KEY=V,...]]: sampler, steps, eta) of each trained concept

Writes benchmarks/results/personalize.json and one comparison grid per target under
benchmarks/results/personalize/ (the report's personalization section shows them); the concepts and
generated images stay under --work (default: the data cache's bench_personalize/).
"""

from __future__ import annotations

import argparse
import datetime
import os
import shlex
import sys
import time
from dataclasses import asdict
from pathlib import Path

import _malloc  # benchmarks/_malloc.py: re-executes with the glibc allocator settings

_malloc.ensure()

import numpy as np  # noqa: E402
from _record import write_record  # noqa: E402  (benchmarks/_record.py)

from difflab.concepts.personalize import PersonalizeConfig, personalize  # noqa: E402
from difflab.concepts.style_eval import EvalClassifierConfig, eval_classifier, score_folder  # noqa: E402
from difflab.data.datasets import cache_dir  # noqa: E402
from difflab.data.styles import SYMBOL, make_style, write_style_set, write_symbol_set  # noqa: E402
from difflab.digits.generate import GenerateConfig, generate, resolve  # noqa: E402
from difflab.errors import DifflabError  # noqa: E402
from difflab.io import image_files, load_image  # noqa: E402
from difflab.models.digits import load_digit_model  # noqa: E402
from difflab.report.personalize import comparison_grid  # noqa: E402
from difflab.runtime import finish_machine, machine  # noqa: E402
from difflab.viz import save_image  # noqa: E402

METHODS = ("ti", "lora", "finetune")
TARGETS = {  # name -> how it is learned and where its generated images are scored: {folder: eval target}
    "lcd": {"kind": "domain", "domain": None, "eval": {"lcd": "lcd"}, "primary": "lcd",
            "description": "lcd: seven-segment digits on a grey-green LCD panel (no font: drawn from polygons)."},
    "blueprint": {"kind": "domain", "domain": None, "eval": {"blueprint": "blueprint"}, "primary": "blueprint",
                  "description": "blueprint: handwritten MNIST strokes in pale ink on blue grid paper."},
    SYMBOL: {"kind": "digit", "domain": "svhn", "eval": {"svhn": "symbol-svhn", "mnistm": "symbol-mnistm"},
             "primary": "svhn",
             "description": f"{SYMBOL}: the letter drawn by the SVHN-style recipe, learned as a new symbol in "
                            f"the svhn domain (and drawn in mnistm too, never seen there)."},
}
RESULTS = Path(__file__).resolve().parent / "results"


SAMPLING_KEYS = {"sampler": str, "steps": int, "eta": float}  # GenerateConfig fields a setting may set
KIND = {str: "a name", int: "an integer", float: "a number"}


def parse_options(opts: str) -> dict:
    """'eta=1,steps=50' -> {'eta': 1.0, 'steps': 50}: GenerateConfig keyword arguments; ValueError naming the
    item that is not KEY=V with a known KEY and a value of its type."""
    out = {}
    for item in filter(None, opts.split(",")):
        key, eq, value = item.partition("=")
        if key not in SAMPLING_KEYS or not eq:
            raise ValueError(f"{item!r} is not KEY=V with KEY one of {sorted(SAMPLING_KEYS)}")
        try:
            out[key] = SAMPLING_KEYS[key](value)
        except ValueError:
            raise ValueError(f"{key} takes {KIND[SAMPLING_KEYS[key]]}, got {value!r}") from None
    return out


def guidance_setting(text: str) -> tuple:
    """'2' -> (2.0, None: generate's default --guide); '2:both' -> (2.0, 'both'): --guidance and --guide;
    '2:both:eta=1,steps=50' -> (2.0, 'both', 'eta=1,steps=50'): also generate's sampling options (sampler,
    steps, eta; the ones not named stay generate's own: DDIM, the model's 20 steps, eta 0)."""
    w, _, rest = text.partition(":")
    guide, _, opts = rest.partition(":")
    if guide not in ("", "digit", "both"):
        raise argparse.ArgumentTypeError(f"{text}: expected W, W:digit, W:both or W:GUIDE:KEY=V,...")
    try:  # the options' syntax, then generate's own checks (sampler name, eta range, steps >= 1)
        GenerateConfig(model="teacher", guidance=float(w), guide=guide or None, **parse_options(opts))
    except (ValueError, DifflabError) as err:
        raise argparse.ArgumentTypeError(f"{text}: {err}") from None
    return (float(w), guide or None, opts) if opts else (float(w), guide or None)


def setting_text(setting: tuple, default_guide: str = "") -> str:
    """(2.0, 'both', 'eta=1') -> '2:both:eta=1', as given on the command line (a None guide -> default_guide)."""
    w, guide, *opts = setting
    return ":".join([f"{w:g}", guide or default_guide, *opts]).rstrip(":")


def sampling_options(setting: tuple) -> dict:
    """A (parsed, so valid) setting's sampling options as GenerateConfig keyword arguments ({} when none)."""
    return parse_options(setting[2] if len(setting) > 2 else "")


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", default=None, help="comma list of targets or target:method (default: all)")
    ap.add_argument("--steps", type=int, default=None, help="personalize steps (default: its own default)")
    ap.add_argument("--rank", type=int, default=None, help="LoRA rank (default: personalize's own)")
    ap.add_argument("--lr", type=float, default=None, help="learning rate (default: the method's own)")
    ap.add_argument("--row-lr", type=float, default=None,
                    help="the new row's own learning rate, lora/finetune (default: personalize's own, 3e-2)")
    ap.add_argument("--prior-weight", type=float, default=None,
                    help="share of each batch from the old domains, lora/finetune (default: the method's own)")
    ap.add_argument("--augment-shift", type=int, default=None,
                    help="shift the concept images by up to this many pixels while learning "
                         "(default: personalize's own, 0)")
    ap.add_argument("--per-digit", type=int, default=20, help="generated images per digit of a style")
    ap.add_argument("--symbol-count", type=int, default=200, help="generated symbols per domain")
    ap.add_argument("--guidance", type=guidance_setting, nargs="+", default=[(3.0, None)],
                    metavar="W[:digit|both[:KEY=V,...]]",
                    help="generate each concept at these guidance scales, W:GUIDE for a given --guide, "
                         "W:GUIDE:sampler=ddpm,steps=50,eta=1 for other sampling (one row each; the concept "
                         "trains once; default: generate's own, 3 and its --guide default, DDIM 20, eta 0)")
    ap.add_argument("--seed", type=int, default=0,
                    help="seed of each concept's training and of its generated images (the 20 training images "
                         "and the base model's baseline stay at seed 0): one draw of a row's seed-to-seed spread")
    ap.add_argument("--model", default="teacher")
    ap.add_argument("--quick", action="store_true", help="tiny sizes: a smoke test of the whole pipeline")
    ap.add_argument("--work", default=None, help="concepts and generated images (default: data cache)")
    ap.add_argument("--out", default=None, help="results JSON (default: benchmarks/results/personalize.json; "
                    "--quick: under --work, never over the real results)")
    args = ap.parse_args()
    default_work = cache_dir() / "bench_personalize" / ("quick" if args.quick else "full")
    args.work = Path(args.work) if args.work else default_work
    if args.quick:
        args.steps, args.per_digit, args.symbol_count = args.steps or 3, 2, 8
    args.out = Path(args.out) if args.out else (args.work / "personalize.json" if args.quick
                                                 else RESULTS / "personalize.json")
    return args


def selected(only: str | None) -> list[tuple[str, str]]:
    """(target, method) pairs from --only ('lcd' = every method of lcd; 'A:ti' = one)."""
    pairs = [(t, m) for t in TARGETS for m in METHODS]
    if only is None:
        return pairs
    keep = []
    for item in only.split(","):
        t, _, m = item.partition(":")
        if t not in TARGETS or (m and m not in METHODS):
            sys.exit(f"--only {item}: targets {', '.join(TARGETS)}, methods {', '.join(METHODS)}")
        keep += [p for p in pairs if p[0] == t and (not m or p[1] == m) and p not in keep]
    return keep


def classifiers(targets, cfg: EvalClassifierConfig) -> dict:
    """{eval target: (model, meta)} for every folder the targets score, trained or loaded from the cache."""
    out = {}
    for t in targets:
        for ev in TARGETS[t]["eval"].values():
            if ev not in out:
                t0 = time.perf_counter()
                model, meta = eval_classifier(ev, cfg, progress=True)
                meta["load_or_train_s"] = time.perf_counter() - t0
                out[ev] = (model, meta)
                how = "cached" if meta["cached"] else f"trained in {meta['train_s']:.0f} s"
                print(f"classifier {ev}: held-out acc {meta['val_acc']:.4f} ({how})", flush=True)
    return out


def folder_bytes(folder: Path) -> dict[str, int]:
    return {p.name: p.stat().st_size for p in sorted(folder.iterdir()) if p.is_file()}


def base_identical(base_model, concept_dir: Path) -> bool:
    """Whether the concept, applied as `generate --concept` applies it, leaves every base weight bit-identical
    (the new table row aside): issue 12's target for ti; lora and finetune change them by design."""
    import torch

    from difflab.concepts.concept import apply_concepts, base_state_dict, load_concept

    adapted = base_state_dict(apply_concepts(base_model, [load_concept(concept_dir)]))
    ref = base_model.state_dict()
    return adapted.keys() == ref.keys() and all(torch.equal(adapted[k], ref[k]) for k in ref)


def run_one(target: str, method: str, images: Path, work: Path, args, base, clfs) -> list[dict]:
    """personalize -> generate --concept -> score; one row of the table per --guidance value."""
    spec = TARGETS[target]
    pc = PersonalizeConfig(images_dir=str(images), kind=spec["kind"], name=target, method=method,
                           domain=spec["domain"], out_dir=str(work / "concepts" / f"{target}-{method}"),
                           model=args.model, overwrite=True, eval_per_digit=1 if args.quick else 10, seed=args.seed,
                           **{k: v for k in ("steps", "rank", "lr", "row_lr", "prior_weight", "augment_shift")
                              if (v := getattr(args, k)) is not None
                              and not (k in ("row_lr", "prior_weight") and method == "ti")})
    res = personalize(pc, progress=False)
    return [score_one(target, method, res, setting, work, args, base, clfs) for setting in args.guidance]


def score_one(target: str, method: str, res, setting: tuple, work: Path, args, base, clfs) -> dict:
    """generate --concept at one setting (scale, guide: None is generate's default, and optional sampling
    options) -> score; one row of the table (its `guide` is the one generate used)."""
    spec, (guidance, guide), sampling = TARGETS[target], setting[:2], sampling_options(setting)
    per = args.per_digit if spec["kind"] == "domain" else args.symbol_count
    # generate's defaults keep the folder name the report's grids were made from
    suffix = (("" if guidance == 3.0 else f"-w{guidance:g}") + (f"-{guide}" if guide else "")
              + "".join(f"-{k}{v:g}" if isinstance(v, (int, float)) else f"-{v}" for k, v in sampling.items()))
    gen_dir = work / "generated" / f"{target}-{method}{suffix}"
    gcfg = GenerateConfig(per_digit=per, model=args.model, concepts=(str(res.path),), guidance=guidance,
                          guide=guide, seed=args.seed, **sampling)
    guide = resolve(gcfg, base[0]).guide
    timing = generate(gen_dir, base[0], base[1], gcfg, overwrite=True, progress=False)
    scores = {folder: score_folder(ev, gen_dir / folder, clfs[ev][0]) for folder, ev in spec["eval"].items()}
    sizes = folder_bytes(res.path)
    meta = res.meta
    row = {"target": target, "kind": spec["kind"], "method": method, "primary": spec["primary"],
           "guidance": guidance, "guide": guide, "setting": list(setting), "sampling": sampling,
           "seed": args.seed,
           "generated_dir": str(gen_dir),
           "concept": str(res.path), "steps": meta["steps"], "lr": meta["lr"], "row_lr": meta.get("row_lr"),
           "rank": meta.get("rank"),
           "prior_weight": meta.get("prior_weight"), "augment_shift": meta.get("augment_shift", 0),
           "final_loss": meta.get("final_loss"),
           "train_s": meta["wall_s"], "retained_eval_s": (meta.get("retained_eval") or {}).get("eval_s"),
           "retained_acc": meta.get("retained_acc"), "generate_s": timing["total_s"], "generated": timing["images"],
           "concept_bytes": sum(sizes.values()), "concept_files": sizes, "scores": scores,
           "base_identical": base_identical(base[0], res.path)}
    s = scores[spec["primary"]]
    print(f"{target:<10} {method:<9} w {setting_text(setting)} ({guide})  acc {s['acc']:.3f}  "
          f"FD {s['fd_generated_vs_real']:.2f} (real {s['fd_real_vs_real']:.2f})  retained {row['retained_acc']}  "
          f"train {row['train_s']:.0f} s  "
          f"{row['concept_bytes'] / 1024:.0f} KB", flush=True)
    return row


def base_rows(targets, work: Path, args, base, clfs) -> list[dict]:
    """The base model's own digits of both domains, scored by each style's classifier: the floor of the
    measurement (what a style classifier makes of digits that are not in its style)."""
    styles = [t for t in targets if TARGETS[t]["kind"] == "domain"]
    if not styles:
        return []
    gen_dir = work / "generated" / "base"
    generate(gen_dir, base[0], base[1], GenerateConfig(per_digit=args.per_digit, model=args.model),
             overwrite=True, progress=False)
    return [{"target": t, "source": m, **score_folder(t, gen_dir / m, clfs[t][0])}
            for t in styles for m in ("mnistm", "svhn")]


def first_per_digit(folder: Path, k: int) -> np.ndarray:
    """The first k images of each digit of a generated style folder ({d}_{NNN}.png), k rows of digits 0-9."""
    return np.stack([load_image(folder / f"{d}_{i:03d}.png") for i in range(1, k + 1) for d in range(10)])


def save_grid(target: str, rows: list[dict], images: Path, work: Path, grids: Path) -> str:
    """The comparison grid of one target: its training images, then 2 rows of each method's images."""
    spec, gen = TARGETS[target], {}
    if spec["kind"] == "domain":
        x, y = make_style(target, "train", 2)
        order = np.lexsort((np.arange(len(y)), y)).reshape(10, 2).T.reshape(-1)  # row k: the k-th of each digit
        train = x[order]
        for r in rows:
            gen[r["method"]] = first_per_digit(Path(r["generated_dir"]) / target, 2)
    else:
        train = np.stack([load_image(p) for p in image_files(images)])
        for r in rows:
            for folder in spec["eval"]:
                files = [p for p in image_files(Path(r["generated_dir"]) / folder)
                         if p.name.startswith(f"{target}_")][:10]
                gen[f"{r['method']} {folder}"] = np.stack([load_image(p) for p in files])
    path = grids / f"{target}.png"
    save_image(comparison_grid(train, gen, f"{target}: training images, then each method's"), path)
    return str(path.relative_to(grids.parent))  # relative to the JSON's folder


def print_table(out: dict) -> None:
    head = (f"{'concept':<10} {'method':<9} {'w':>4} {'guide':<5} {'sampling':<16} {'acc':>6} {'FD gen':>7} "
            f"{'FD real':>7} {'ratio':>6} {'ret MNIST-M':>11} {'ret SVHN':>8} {'train s':>7} {'size KB':>8} "
            f"{'base same':>9}")
    print("\n" + head + "\n" + "-" * len(head))
    for r in out["runs"]:
        s, ret = r["scores"][r["primary"]], r["retained_acc"] or {}
        sampling = ",".join(f"{k}={v}" for k, v in r.get("sampling", {}).items())
        print(f"{r['target']:<10} {r['method']:<9} {r['guidance']:>4g} {r['guide']:<5} {sampling:<16} "
              f"{s['acc']:>6.3f} "
              f"{s['fd_generated_vs_real']:>7.2f} "
              f"{s['fd_real_vs_real']:>7.3f} {s['fd_generated_vs_real'] / s['fd_real_vs_real']:>5.1f}x "
              f"{ret.get('mnistm', float('nan')):>11.3f} {ret.get('svhn', float('nan')):>8.3f} "
              f"{r['train_s']:>7.0f} {r['concept_bytes'] / 1024:>8.0f} {str(r['base_identical']):>9}")
        for folder, s2 in r["scores"].items():
            if folder != r["primary"]:
                print(f"{'':<10} {'':<9} {'':>4} {'':<5} {'':<16} {s2['acc']:>6.3f} {s2['fd_generated_vs_real']:>7.2f} "
                      f"{s2['fd_real_vs_real']:>7.2f}   ({SYMBOL} drawn in {folder}, never trained there)")
    for b in out["baselines"]:
        print(f"base model's {b['source']} digits scored as {b['target']}: acc {b['acc']:.3f}, "
              f"FD {b['fd_generated_vs_real']:.2f} (real {b['fd_real_vs_real']:.2f})")
    for ev, meta in out["classifiers"].items():
        print(f"classifier {ev}: held-out acc {meta['val_acc']:.4f} on {meta['val_total']} images")


def main() -> None:
    args = parse_args()
    pairs = selected(args.only)
    targets = list(dict.fromkeys(t for t, _ in pairs))
    work = args.work
    # the default results' grids are what the report shows; another --out keeps its own beside it
    grids = args.out.resolve().parent / ("personalize" if args.out.name == "personalize.json" else args.out.stem)
    info = machine()
    ccfg = EvalClassifierConfig(train_size=200, val_size=100, epochs=1) if args.quick else EvalClassifierConfig()
    t0 = time.perf_counter()
    clfs = classifiers(targets, ccfg)
    classifier_s = time.perf_counter() - t0
    base = load_digit_model(args.model)[:2]
    runs, out_targets = [], {}
    for t in targets:
        images = work / "images" / t
        if TARGETS[t]["kind"] == "domain":
            write_style_set(images, t, per_digit=2, seed=0)
        else:
            write_symbol_set(images, TARGETS[t]["domain"], count=20, seed=0)
        rows = [row for tt, m in pairs if tt == t for row in run_one(t, m, images, work, args, base, clfs)]
        runs += rows
        first_scale = [r for r in rows if r["setting"] == list(args.guidance[0])]  # a grid row per method
        out_targets[t] = {"description": TARGETS[t]["description"], "train_count": 20, "images": str(images),
                          "grid": save_grid(t, first_scale, images, work, grids)}
    generate_default = "generate's default guide"
    threads = [f"OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']}"] if "OMP_NUM_THREADS" in os.environ else []
    out = {"command": " ".join([*threads, shlex.join([os.path.relpath(sys.executable), *sys.argv])]),
           "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
           "settings": {"steps": args.steps, "rank": args.rank, "lr": args.lr, "row_lr": args.row_lr,
                        "prior_weight": args.prior_weight, "per_digit": args.per_digit,
                        "symbol_count": args.symbol_count, "model": args.model, "quick": args.quick,
                        "seed": args.seed, "classifier": asdict(ccfg),
                        "guidance": [{"guidance": st[0], "guide": st[1] or generate_default,
                                      "sampling": sampling_options(st) or "generate's default (DDIM 20, eta 0)"}
                                     for st in args.guidance],
                        "sampler_note": f"{args.model}, DDIM 20 steps unless a setting says otherwise, guidance "
                                        f"{', '.join(setting_text(st, generate_default) for st in args.guidance)}"
                                        f", seed {args.seed} (the base model's baseline: seed 0)"},
           "classifiers": {ev: meta for ev, (_, meta) in clfs.items()}, "classifier_s": classifier_s,
           "baselines": base_rows(targets, work, args, base, clfs), "targets": out_targets, "runs": runs,
           "malloc": {k: os.environ.get(k) for k in _malloc.MALLOC}, "machine": finish_machine(info)}
    print_table(out)
    write_record(args.out, out)
    print(f"grids: {grids}/")


if __name__ == "__main__":
    main()
