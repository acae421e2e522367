"""Zero-shot end to end: parity with transformers' logits_per_image, the CLI and its report files."""

import csv
import json
import math

import pytest
import torch
from PIL import Image

from difflab.cli import main
from difflab.clip.config import ZeroShotConfig
from difflab.clip.prompts import ENSEMBLE
from difflab.clip.zeroshot import run_zeroshot, summarise
from difflab.models.clip import ClipScorer

from .helpers import NAMES, make_flat_folder, make_subfolders

transformers = pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def scaled(tiny_clip_dir):
    """The tiny model with a logit scale of 30, not 100: parity must use the model's own scale."""
    model = transformers.CLIPModel.from_pretrained(tiny_clip_dir).eval()
    model.logit_scale.data.fill_(math.log(30.0))
    processor = transformers.CLIPProcessor.from_pretrained(tiny_clip_dir)
    return model, processor, ClipScorer(model, processor.tokenizer, processor.image_processor, batch_size=5)


def test_logits_match_transformers(tmp_path, scaled):
    model, processor, scorer = scaled
    images, labels = make_flat_folder(tmp_path, per_class=3)
    result = run_zeroshot(ZeroShotConfig(str(images), "unused", labels=str(labels)), scorer, progress=False)
    assert result.logits.shape == (12, 4) and scorer.logit_scale == pytest.approx(30.0)
    prompts = [f"a photo of a {n.replace('_', ' ')}." for n in NAMES]
    pil = [Image.open(f).convert("RGB") for f in result.files]
    with torch.no_grad():
        ref = model(**processor(text=prompts, images=pil, return_tensors="pt", padding=True)).logits_per_image
    torch.testing.assert_close(result.logits, ref, atol=1e-5, rtol=0)
    assert result.labels.tolist() == [c for c in range(4) for _ in range(3)]


def test_cli_flat_layout_report(tmp_path, tiny_clip_dir, capsys):
    images, labels = make_flat_folder(tmp_path, per_class=3)
    (images / "2_999.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")  # unreadable: skipped, counted
    (images / "notes.txt").write_text("not an image, ignored")
    out = tmp_path / "report"
    argv = ["clip", "zeroshot", str(images), "--labels", str(labels), "--model", str(tiny_clip_dir),
            "--templates", "ensemble", "--out", str(out), "--batch-size", "5", "--top-k", "2", "--cases", "3"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "top-1" in printed and "skipped 1 unreadable" in printed
    report = json.loads((out / "report.json").read_text())
    assert report["n_images"] == 12 and report["n_classes"] == 4 and report["n_skipped"] == 1
    assert report["skipped"][0]["file"].endswith("2_999.png")
    # io.open_image's one line, without the file name the report has in its own field
    assert report["skipped"][0]["reason"].startswith("corrupt or unreadable image (")
    assert report["templates"] == list(ENSEMBLE) and report["top_k"] == 2
    assert report["top1"] <= report["top2"] <= 1
    assert sum(v["n"] for v in report["per_class"].values()) == 12
    rows = list(csv.DictReader(open(out / "predictions.csv")))
    assert len(rows) == 12
    correct = sum(int(r["correct"]) for r in rows)
    assert report["top1"] == pytest.approx(correct / 12)
    # per-class accuracy and the cases agree with the rows
    for name, v in report["per_class"].items():
        mine = [r for r in rows if r["true"] == name]
        assert v["correct"] == sum(int(r["correct"]) for r in mine)
    for case in report["failures"]:
        row = next(r for r in rows if r["file"] == case["file"])
        assert row["correct"] == "0" and row["predicted"] == case["predicted"]
    assert len(report["failures"]) == min(3, 12 - correct) and len(report["successes"]) == min(3, correct)
    assert Image.open(out / "cases.png").size[0] >= 3 * 160
    # a second run into the same folder is refused without --overwrite, and works with it
    assert main(argv) == 2
    assert "not empty" in capsys.readouterr().err
    assert main([*argv, "--overwrite"]) == 0


def test_subfolder_layout(tmp_path, tiny_scorer):
    root = make_subfolders(tmp_path / "data", per_class=2)
    result = run_zeroshot(ZeroShotConfig(str(root), "unused", templates="single"), tiny_scorer,
                          progress=False)
    assert result.folder.layout == "subfolders" and result.folder.classnames == sorted(NAMES)
    summary = summarise(result, top_k=5)
    assert summary["top_k"] == 4 and summary["top4"] == 1.0  # k is capped at the number of classes
    assert summary["n_images"] == 8


def test_cli_without_report_dir_and_bad_model(tmp_path, tiny_clip_dir, capsys):
    root = make_subfolders(tmp_path / "data", per_class=1)
    assert main(["clip", "zeroshot", str(root), "--model", str(tiny_clip_dir)]) == 0
    assert "top-1" in capsys.readouterr().out
    assert main(["clip", "zeroshot", str(root), "--model", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "--model" in err
    assert main(["clip", "zeroshot", str(root), "--model", str(tiny_clip_dir), "--batch-size", "0"]) == 2


def test_cli_defaults_match_config():
    from difflab.cli import build_parser
    from difflab.clip.cli import config_from_args

    args = build_parser().parse_args(["clip", "zeroshot", "imgs", "--model", "m"])
    assert config_from_args(args) == ZeroShotConfig("imgs", "m")


def test_failed_run_leaves_no_folder_and_keeps_an_old_report(tmp_path, tiny_clip_dir, capsys):
    root = make_subfolders(tmp_path / "data", per_class=1)
    out = tmp_path / "report"
    bad = ["clip", "zeroshot", str(root), "--model", str(tmp_path / "missing"), "--out", str(out)]
    assert main(bad) == 2 and not out.exists()
    assert [p.name for p in tmp_path.iterdir()] == ["data"]  # no staging folder or lock left either
    assert main(["clip", "zeroshot", str(root), "--model", str(tiny_clip_dir), "--out", str(out)]) == 0
    before = (out / "report.json").read_text()
    assert main([*bad, "--overwrite"]) == 2
    assert (out / "report.json").read_text() == before
    capsys.readouterr()
