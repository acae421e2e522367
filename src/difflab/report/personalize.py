"""Report section: personalizing the digit model (issue 12), from the benchmark's saved results.

Learning a concept takes minutes per method, too slow for `difflab report`, so this section trains
nothing: it shows what benchmarks/bench_personalize.py measured and saved (benchmarks/results/
personalize.json and one comparison grid per concept beside it: its 20 training images above the digits
each method generated) and says how to make them when they are missing. `comparison_grid` draws those
grids; the benchmark calls it, so the picture and the numbers come from the same run.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np

from difflab.errors import DifflabError
from difflab.report.context import Context
from difflab.report.html import command_block, figure, paragraph, table

BENCH_COMMAND = "OMP_NUM_THREADS=2 .venv/bin/python benchmarks/bench_personalize.py"
ENV = "DIFFLAB_PERSONALIZE_RESULTS"  # another results file (tests; a copy kept elsewhere)
# the source checkout's results; an installed difflab has no benchmarks/ folder and gets the note instead
DEFAULT_RESULTS = Path(__file__).resolve().parents[3] / "benchmarks" / "results" / "personalize.json"
PRETTY = {"mnistm": "MNIST-M", "svhn": "SVHN"}


def results_path() -> Path:
    return Path(os.environ.get(ENV) or DEFAULT_RESULTS)


def comparison_grid(train: np.ndarray, generated: dict[str, np.ndarray], title: str, ncols: int = 10):
    """A PIL image: the training images (N, 28, 28, 3) uint8 in rows of `ncols` labelled 'train', then
    each method's generated images (same format) in rows labelled with its name, scaled 2x."""
    from difflab.viz import grid

    def rows(images: np.ndarray, label: str) -> tuple[list[np.ndarray], list[str]]:
        n = -(-len(images) // ncols)
        pad = [np.full((28, 28, 3), 255, np.uint8)] * (n * ncols - len(images))  # blank to a full row
        return list(images) + pad, [label] * n

    tiles, labels = rows(train, "train")
    for name, images in generated.items():
        t, lab = rows(images, name)
        tiles += t
        labels += lab
    return grid(tiles, ncols, scale=2, row_labels=labels, title=title)


def _cell(x, fmt: str = "{:.3f}") -> str:
    return "-" if x is None else fmt.format(x)


def _fd(x: float) -> str:
    """A Fréchet distance: two decimals, three below 1 (the floors of these styles are ~0.02)."""
    return f"{x:.2f}" if x >= 1 else f"{x:.3f}"


def _size(n: int) -> str:
    """Bytes in decimal units, as docs/RESULTS.md writes them (1.9 kB, 627 kB, 7.6 MB)."""
    return f"{n / 1e6:.1f} MB" if n >= 1e6 else f"{n / 1e3:.1f} kB" if n < 1e4 else f"{n / 1e3:.0f} kB"


def _row(run: dict) -> list[str]:
    s = run["scores"][run["primary"]]
    ret = run.get("retained_acc") or {}
    return [run["target"], run["method"], f"{s['acc']:.3f} ({s['correct']}/{s['total']})",
            f"{_fd(s['fd_generated_vs_real'])} / {_fd(s['fd_real_vs_real'])}",
            f"{s['fd_generated_vs_real'] / s['fd_real_vs_real']:.1f}x",
            _cell(ret.get("mnistm")), _cell(ret.get("svhn")), f"{run['train_s']:.0f}",
            _size(run["concept_bytes"]), {True: "yes", False: "no"}.get(run.get("base_identical"), "-")]


def _context_note(data: dict) -> str:
    """The numbers that say what the table's numbers are worth: each evaluation classifier's held-out
    accuracy, the base model's own digits scored as each style (no personalization), the symbol drawn in
    the domain it was not trained in."""
    clf = [f"{name} {m['val_acc']:.3f}" + (f" (digits {m['val_digit_acc']:.3f}, symbol {m['val_symbol_acc']:.3f})"
                                          if "val_symbol_acc" in m else "")
           for name, m in data.get("classifiers", {}).items()]
    base = [f"{b['source']} digits as {b['target']}: accuracy {b['acc']:.3f}, Fréchet {_fd(b['fd_generated_vs_real'])}"
            for b in data.get("baselines", [])]
    other = [f"{r['target']} ({r['method']}) drawn in {k}: recognised {s['acc']:.3f}, Fréchet "
             f"{_fd(s['fd_generated_vs_real'])} / {_fd(s['fd_real_vs_real'])}"
             for r in data["runs"] for k, s in r["scores"].items() if k != r["primary"]]
    parts = [f"Evaluation classifiers' accuracy on held-out real images: {'; '.join(clf)}." if clf else "",
             f"Without personalization, the base model's own digits: {'; '.join(base)}." if base else "",
             f"The symbol in the domain it was not learned in: {'; '.join(other)}." if other else ""]
    return " ".join(p for p in parts if p)


def _read(path: Path) -> dict:
    """The benchmark's JSON, checked for what this section reads; one DifflabError line otherwise."""
    from difflab.io import read_json

    data = read_json(path, "personalization benchmark results")
    try:
        for run in data["runs"]:
            _row(run)
        for target in data["targets"].values():
            str(target["grid"])
    except (KeyError, TypeError, ZeroDivisionError, ValueError) as e:
        raise DifflabError(f"{path}: not the format benchmarks/bench_personalize.py writes ({type(e).__name__}: "
                           f"{e})") from None
    return data


def personalize(ctx: Context) -> str:
    path = results_path()
    if not path.is_file():
        ctx.numbers["personalize"] = {"results": None}
        return (paragraph(f"No personalization results at {path}: learning concepts takes minutes per method, so "
                          f"the report shows the benchmark's saved results instead of training. Make them with:")
                + command_block(BENCH_COMMAND))
    try:
        data = _read(path)
    except DifflabError as e:  # a stale or broken results file must not cost the rest of the report
        ctx.numbers["personalize"] = {"results": str(path), "error": str(e)}
        return paragraph(f"The personalization results could not be read: {e}. Rerun {BENCH_COMMAND}.", "note")
    out = ctx.stage / "personalize"
    out.mkdir(parents=True, exist_ok=True)
    parts = []
    for name, target in data["targets"].items():
        src = path.parent / target["grid"]
        if not src.is_file():
            parts.append(paragraph(f"{name}: grid {src} missing (rerun the benchmark).", "note"))
            continue
        shutil.copyfile(src, out / f"{name}.png")
        parts.append(figure(
            f"personalize/{name}.png", f"{name}: training images and generated images per method",
            f"{target['description']} Top rows: the {target['train_count']} training images the concept was "
            f"learned from (difflab digits personalize); below, images each method's concept generated "
            f"(difflab digits generate OUT --concept CONCEPT_DIR; {data['settings']['sampler_note']}). The "
            f"grid is the benchmark's, copied here; remake it with the benchmark:", data["command"]))
    parts.append(table(
        ["concept", "method", "accuracy in the new style / symbol", "Fréchet gen / real-vs-real", "ratio",
         "retained MNIST-M", "retained SVHN", "train s", "concept size", "base weights identical"],
        [_row(r) for r in data["runs"]],
        "Accuracy: the classifier of that style (trained on synthesised images of it) on the generated digits; "
        "for the symbol, the share of generated symbols its domain's 11-way classifier recognises. Fréchet: "
        "that classifier's features, generated vs held-out real images, beside two real samples of the same "
        "sizes (the distance's noise floor); ratio = the two. Retained: the shipped classifiers' accuracy on "
        "the old domains drawn by the adapted model (concept.json). Base weights identical: every base weight "
        "of the adapted model, as `generate --concept` builds it, equals the base model's bit for bit (the new "
        "table row aside). Train s: the personalize run's wall time "
        f"on {data['machine']['cpu']} ({data['machine']['cores']} cores), {data['date']}."))
    parts.append(paragraph(_context_note(data), "note"))
    parts.append(paragraph(f"From {path.name}, made by: {data['command']}", "note"))
    ctx.numbers["personalize"] = {"results": str(path), "date": data["date"],
                                  "runs": [{k: r[k] for k in ("target", "method", "primary", "train_s")}
                                           | {"acc": r["scores"][r["primary"]]["acc"]} for r in data["runs"]]}
    return "".join(parts)
