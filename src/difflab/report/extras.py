"""Optional report sections: CLIP zero-shot (with --clip/--zeroshot/--labels) and textual inversion
(with --ti, a folder written by `difflab ti generate`, scored by `difflab ti score`).

Their inputs are checked by `prepare_*` before the report starts its minutes of digit work, so a CLIP
folder that does not load or an empty textual-inversion folder fails at once, in one line.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np

from difflab.errors import DifflabError
from difflab.io import open_image, read_json
from difflab.report.context import Context, device_flag
from difflab.report.html import command_block, figure, paragraph, table
from difflab.viz import save_image

TI_THUMB = 128  # px per textual-inversion tile: SD images are 512 px, a sheet of 8 must fit the page
TI_COLUMNS = 8


def prepare_zeroshot(clip_dir, images_dir, labels, device: str = "auto"):
    """Load the CLIP model onto `device` and scan the image folder now; returns the loaded ClipScorer."""
    from difflab.clip.dataset import scan_folder
    from difflab.models.clip import ClipScorer

    if (clip_dir is None) != (images_dir is None):
        raise DifflabError("--clip and --zeroshot go together (CLIP model folder + labelled images)")
    if labels is not None and images_dir is None:
        raise DifflabError("--labels needs --clip and --zeroshot")
    scan_folder(images_dir, labels)
    return ClipScorer.from_pretrained(clip_dir, device=device)


def zeroshot(ctx: Context) -> str:
    from difflab.clip.config import ZeroShotConfig
    from difflab.clip.report import write_report
    from difflab.clip.zeroshot import run_zeroshot, summarise

    z = ctx.zeroshot
    config = ZeroShotConfig(str(z["images"]), str(z["clip"]), labels=None if z["labels"] is None else str(z["labels"]))
    result = run_zeroshot(config, scorer=z["scorer"], progress=ctx.progress)
    s = summarise(result, top_k=config.top_k, n_cases=config.n_cases)
    write_report(result, s, ctx.stage / "clip")
    ctx.numbers["zeroshot"] = {k: s[k] for k in ("n_images", "n_classes", "top1", f"top{s['top_k']}", "n_skipped")}
    labels = ["--labels", config.labels] if config.labels else []
    cmd = ctx.command("clip", "zeroshot", config.images_dir, "--model", config.model, *labels,
                      "--out", ctx.path("clip"),
                      *device_flag(ctx.cfg.device), "--overwrite")
    k = s["top_k"]
    scored = sorted((v["accuracy"], name, v["n"]) for name, v in s["per_class"].items() if v["n"])
    parts = [
        table(["images", "classes", "top-1", f"top-{k}", "skipped (unreadable)"],
              [[s["n_images"], s["n_classes"], f"{100 * s['top1']:.2f}%", f"{100 * s[f'top{k}']:.2f}%",
                s["n_skipped"]]],
              f"CLIP zero-shot on {config.images_dir} with {len(s['templates'])} prompt template(s), "
              f"model {config.model}. Regenerate this table, the ones below and the cases figure with:"),
        command_block(cmd),
        table(["class", "accuracy", "images"], [[n, f"{100 * a:.1f}%", c] for a, n, c in scored[:10]],
              "The worst classes (up to 10)."),
    ]
    if s["confused_pairs"]:
        parts.append(table(["true", "predicted", "count"],
                           [[p["true"], p["predicted"], p["count"]] for p in s["confused_pairs"]],
                           "The most frequent confusions."))
    parts.append(figure("clip/cases.png", "zero-shot successes and failures",
                        "Top row: the most confident correct predictions (green); bottom row: the most "
                        "confident wrong ones (red), with the true class, the prediction and its "
                        "probability. Every prediction is in clip/predictions.csv.", cmd))
    return "".join(parts)


def ti_layout(ti_dir) -> dict[tuple[str, int], list[Path]]:
    """{(concept key, prompt index): image files in k order} of a `ti generate` folder."""
    root = Path(ti_dir)
    if not root.is_dir():
        raise DifflabError(f"{root}: textual-inversion output folder not found")
    found = {}
    for key_dir in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        prompt_dirs = [p for p in key_dir.iterdir() if p.is_dir() and p.name.isdigit()]
        for i_dir in sorted(prompt_dirs, key=lambda p: int(p.name)):
            pat = re.compile(rf"^source{re.escape(key_dir.name)}_prompt{i_dir.name}_(\d+)\.png$")
            files = [(int(m.group(1)), p) for p in i_dir.iterdir() if (m := pat.match(p.name))]
            if files:
                found[(key_dir.name, int(i_dir.name))] = [p for _, p in sorted(files)]
    if not found:
        raise DifflabError(f"{root}: no images in the `difflab ti generate` layout "
                           "<key>/<prompt_index>/source<key>_prompt<prompt_index>_<k>.png")
    return found


def _thumb(path: Path) -> np.ndarray:
    from PIL import Image

    im = open_image(path)
    return np.asarray(im.resize((TI_THUMB, TI_THUMB), Image.BICUBIC))


def textual_inversion(ctx: Context) -> str:
    from difflab.viz import grid

    root = Path(ctx.ti_dir)
    layout = ti_layout(root)
    scores = _read_scores(root / "scores.json")
    (ctx.stage / "ti").mkdir(parents=True, exist_ok=True)
    parts = []
    for key in sorted({k for k, _ in layout}):
        prompts = sorted(i for k, i in layout if k == key)
        n = min(TI_COLUMNS, max(len(layout[key, i]) for i in prompts))
        tiles, labels = [], []
        for i in prompts:
            files = layout[key, i][:n]
            tiles += [_thumb(p) for p in files] + [np.full((TI_THUMB, TI_THUMB, 3), 255, np.uint8)] * (n - len(files))
            labels.append(f"prompt {i}")
        save_image(grid(np.stack(tiles), ncols=n, row_labels=labels, title=f"concept {key}"),
                    ctx.stage / "ti" / f"{key}.png")
        parts.append(figure(
            f"ti/{key}.png", f"textual inversion concept {key}",
            f"Concept {key}: the first {n} images of each prompt of {root}/{key}/ (made by `difflab ti "
            f"generate PROMPTS.json {root} --model SD --embeds ...`; the report does not know that run's "
            f"arguments). This sheet is rebuilt by the report command.", ctx.report_command))
    if scores is None:
        parts.append(paragraph(f"No {root}/scores.json: run `difflab ti score PROMPTS.json {root} "
                               "--concepts CONCEPTS_DIR --clip CLIP_DIR` to add the CLIP scores here.", "note"))
    else:
        shutil.copyfile(root / "scores.json", ctx.stage / "ti" / "scores.json")
        rows = [[r["key"], r["prompt_index"], f"{r['image']:.2f}", f"{r['text']:.2f}",
                 f"{r['baseline'][0]:g} / {r['baseline'][1]:g}", "PASS" if r["passed"] else "FAIL"]
                for r in scores["results"]]
        ctx.numbers["textual_inversion"] = scores
        parts.append(table(
            ["concept", "prompt", "image score", "text score", "baseline (image / text)", "result"], rows,
            f"CLIP scores from {root}/scores.json (copied to ti/scores.json): mean over the top "
            f"{scores.get('top_k', 5)} images ranked by image + {scores.get('text_weight', 2.5):g} x text score; "
            f"image score = 100 x cosine to the concept's photos, text score = 100 x cosine to the plain-text "
            f"description. Regenerate with:"))
        parts.append(command_block(f"difflab ti score PROMPTS.json {root} --concepts CONCEPTS_DIR --clip CLIP_DIR"))
    return "".join(parts)


def _read_scores(path: Path) -> dict | None:
    if not path.is_file():
        return None
    data = read_json(path, "`difflab ti score` report")
    try:
        rows = data["results"]
        for r in rows:
            r["key"], r["prompt_index"], r["image"], r["text"], r["baseline"], r["passed"]  # noqa: B018
    except (KeyError, TypeError) as e:
        raise DifflabError(f"{path}: not a `difflab ti score` report ({type(e).__name__}: {e})") from None
    return data
