"""The zero-shot report: printed summary, report.json, predictions.csv and a labelled grid of cases."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from PIL import Image, ImageDraw

from difflab import viz
from difflab.clip.zeroshot import ZeroShotResult, true_rank
from difflab.io import atomic_path, open_image

TILE = 160  # px per case image: large enough to see a 32x32 CIFAR image, small enough for 10 tiles


def prediction_rows(result: ZeroShotResult, top_k: int = 5) -> list[dict]:
    """One row per image: file, true/predicted class, confidence, probability and rank of the truth."""
    names, logits, labels = result.folder.classnames, result.logits, result.labels
    ids = result.folder.class_ids
    probs = logits.softmax(dim=1)
    top = logits.topk(min(top_k, len(names)), dim=1).indices
    rank = true_rank(logits, labels)
    rows = []
    for i, f in enumerate(result.files):
        t, p = int(labels[i]), int(top[i, 0])
        rows.append({"file": str(f), "true_id": ids[t], "true": names[t], "predicted_id": ids[p],
                     "predicted": names[p], "confidence": f"{float(probs[i, p]):.6f}",
                     "true_prob": f"{float(probs[i, t]):.6f}", "true_rank": int(rank[i]),
                     "correct": int(t == p), f"top{top.shape[1]}": "|".join(names[j] for j in top[i].tolist())})
    return rows


def _fit(draw, text: str, font, width: int) -> str:
    """Shorten `text` with an ellipsis until it fits `width` pixels."""
    while text and draw.textlength(text, font=font) > width:
        text = text[:-2] + "…" if len(text) > 2 else ""
    return text


def cases_grid(summary: dict) -> Image.Image:
    """Two rows: successes (green frame) over failures (red frame), each with file, truth, prediction."""
    rows = [("successes", (0, 150, 0)), ("failures", (200, 0, 0))]
    ncols = max(1, *(len(summary[k]) for k, _ in rows))
    font, small = viz.font(13), viz.font(11)
    label_h, head, pad = 4 * 15 + 4, 24, 6
    cell_w, cell_h = TILE + 2 * pad, TILE + label_h + 2 * pad
    canvas = Image.new("RGB", (ncols * cell_w, 2 * (head + cell_h)), "white")
    draw = ImageDraw.Draw(canvas)
    for r, (key, colour) in enumerate(rows):
        y0 = r * (head + cell_h)
        draw.text((pad, y0 + 4), f"{key} (most confident first)", fill=colour, font=font)
        if not summary[key]:
            draw.text((pad, y0 + head + pad), f"no {key}", fill=(90, 90, 90), font=font)
        for c, case in enumerate(summary[key]):
            x, y = c * cell_w + pad, y0 + head + pad
            tile = open_image(case["file"])  # only readable files are cases
            tile.thumbnail((TILE, TILE), Image.NEAREST if max(tile.size) < TILE else Image.BICUBIC)
            if max(tile.size) < TILE:  # upscale tiny images with visible pixels rather than blur
                s = TILE / max(tile.size)
                tile = tile.resize((max(1, round(tile.width * s)), max(1, round(tile.height * s))), Image.NEAREST)
            draw.rectangle([x - 3, y - 3, x + TILE + 2, y + TILE + 2], outline=colour, width=3)
            canvas.paste(tile, (x + (TILE - tile.width) // 2, y + (TILE - tile.height) // 2))
            lines = [(Path(case["file"]).name, small, (60, 60, 60)),
                     (f"true: {case['true']}", font, (0, 0, 0)),
                     (f"pred: {case['predicted']}", font, colour),
                     (f"p={case['confidence']:.2f}  true p={case['true_prob']:.2f}", small, (60, 60, 60))]
            for k, (text, f, fill) in enumerate(lines):
                draw.text((x, y + TILE + 6 + 15 * k), _fit(draw, text, f, TILE), fill=fill, font=f)
    return canvas


def format_summary(summary: dict, n_worst: int = 10) -> str:
    """Human-readable text: accuracies, worst classes, confused pairs, cases, skipped files."""
    k = summary["top_k"]
    out = [f"zero-shot on {summary['n_images']} images, {summary['n_classes']} classes, "
           f"{len(summary['templates'])} template(s): top-1 {100 * summary['top1']:.2f}%  "
           f"top-{k} {100 * summary[f'top{k}']:.2f}%"]
    if summary["n_skipped"]:
        out.append(f"skipped {summary['n_skipped']} unreadable image(s), e.g. {summary['skipped'][0]['file']}")
    scored = [(v["accuracy"], name, v["n"]) for name, v in summary["per_class"].items() if v["n"]]
    out.append(f"worst classes (of {len(scored)} with images):")
    out += [f"  {100 * a:6.2f}%  {name} (n={n})" for a, name, n in sorted(scored)[:n_worst]]
    if summary["confused_pairs"]:
        out.append("most confused (true -> predicted: count):")
        out += [f"  {p['true']} -> {p['predicted']}: {p['count']}" for p in summary["confused_pairs"]]
    for key in ("successes", "failures"):
        out.append(f"{key}:")
        out += [f"  {Path(c['file']).name}: true {c['true']}, predicted {c['predicted']} "
                f"(p={c['confidence']:.3f}, true rank {c['true_rank']})" for c in summary[key]]
    return "\n".join(out)


def write_report(result: ZeroShotResult, summary: dict, out_dir) -> dict[str, Path]:
    """Write report.json, predictions.csv, cases.png and summary.txt into `out_dir` (atomically)."""
    out = Path(out_dir)
    paths = {name: out / name for name in ("report.json", "predictions.csv", "cases.png", "summary.txt")}
    with atomic_path(paths["report.json"]) as tmp:
        tmp.write_text(json.dumps(summary, indent=2, ensure_ascii=False), encoding="utf-8")
    rows = prediction_rows(result, summary["top_k"])
    with atomic_path(paths["predictions.csv"]) as tmp, open(tmp, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    viz.save_image(cases_grid(summary), paths["cases.png"])
    with atomic_path(paths["summary.txt"]) as tmp:
        tmp.write_text(format_summary(summary) + "\n", encoding="utf-8")
    return paths
