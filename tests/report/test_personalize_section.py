"""The report's personalization section (report/personalize.py): it trains nothing, shows the benchmark's
saved results (a small fake of benchmarks/bench_personalize.py's JSON here) and says what to run without them."""

import html
import json
import re

import numpy as np
import pytest
from PIL import Image

from difflab.report.config import ReportConfig
from difflab.report.context import Context
from difflab.report.personalize import BENCH_COMMAND, ENV, comparison_grid, personalize


def fake_score(acc_correct: int, total: int, fd: float, fd_real: float) -> dict:
    return {"correct": acc_correct, "total": total, "acc": acc_correct / total, "per_class_acc": {"0": 1.0},
            "confused_with": {}, "fd_generated_vs_real": fd, "fd_real_vs_real": fd_real,
            "n_generated": total, "n_real": 1000}


def fake_results(folder, grid: bool = True):
    """benchmarks/results/personalize.json's shape: two runs of one style, one of the symbol."""
    (folder / "personalize").mkdir(parents=True)
    if grid:
        for name in ("lcd", "A"):
            Image.fromarray(np.full((40, 60, 3), 200, np.uint8)).save(folder / "personalize" / f"{name}.png")
    run = {"kind": "domain", "steps": 300, "lr": 0.005, "train_s": 95.4, "concept_bytes": 2048,
           "retained_acc": {"mnistm": 1.0, "svhn": 0.99}}
    runs = [{**run, "target": "lcd", "method": "ti", "primary": "lcd", "base_identical": True,
             "scores": {"lcd": fake_score(180, 200, 3.0, 0.018)}},
            {**run, "target": "lcd", "method": "lora", "primary": "lcd", "concept_bytes": 300 * 1024,
             "base_identical": False,
             "scores": {"lcd": fake_score(199, 200, 1.8, 1.5)}},
            {**run, "target": "A", "kind": "digit", "method": "ti", "primary": "svhn", "retained_acc": None,
             "scores": {"svhn": fake_score(150, 200, 5.0, 2.0), "mnistm": fake_score(20, 200, 9.0, 2.0)}}]
    data = {"command": ".venv/bin/python benchmarks/bench_personalize.py", "date": "2026-11-27T13:00:00+00:00",
            "settings": {"sampler_note": "teacher, DDIM 20 steps, guidance 3, seed 0"},
            "machine": {"cpu": "Test CPU", "cores": 2}, "runs": runs,
            "classifiers": {"lcd": {"val_acc": 1.0},
                            "symbol-svhn": {"val_acc": 0.99, "val_digit_acc": 0.989, "val_symbol_acc": 1.0}},
            "baselines": [{"target": "lcd", "source": "svhn", "acc": 0.3, "fd_generated_vs_real": 40.0}],
            "targets": {n: {"description": f"{n}: a test target.", "train_count": 20, "grid": f"personalize/{n}.png"}
                        for n in ("lcd", "A")}}
    path = folder / "personalize.json"
    path.write_text(json.dumps(data))
    return path


def make_ctx(tmp_path) -> Context:
    stage = tmp_path / "out"
    stage.mkdir(parents=True)
    return Context(stage, str(stage), ReportConfig(), None, None, None, {}, progress=False,
                   report_command="difflab report OUT")


def rows(section: str) -> list[list[str]]:
    body = re.search(r"<tbody>(.*?)</tbody>", section, re.S).group(1)
    return [[html.unescape(c) for c in re.findall(r"<td>(.*?)</td>", r)] for r in re.findall(r"<tr>(.*?)</tr>", body)]


def test_section_from_results(tmp_path, monkeypatch):
    monkeypatch.setenv(ENV, str(fake_results(tmp_path / "results")))
    ctx = make_ctx(tmp_path)
    section = personalize(ctx)
    assert re.findall(r'<img src="([^"]+)"', section) == ["personalize/lcd.png", "personalize/A.png"]
    for name in ("lcd", "A"):
        assert (ctx.stage / "personalize" / f"{name}.png").is_file()
    body = rows(section)
    assert [r[:2] for r in body] == [["lcd", "ti"], ["lcd", "lora"], ["A", "ti"]]
    assert body[0][2] == "0.900 (180/200)" and body[0][3] == "3.00 / 0.018" and body[0][4] == "166.7x"
    assert body[0][8] == "2.0 kB" and body[1][8] == "307 kB"
    assert body[2][5:7] == ["-", "-"]  # no retained accuracy measured: a dash
    assert [r[9] for r in body] == ["yes", "no", "-"]
    for caption in re.findall(r"<figcaption>(.*?)</figcaption>", section, re.S):
        assert "difflab digits generate" in caption and "bench_personalize.py" in caption
    text = html.unescape(section)
    assert "symbol-svhn 0.990 (digits 0.989, symbol 1.000)" in text
    assert "svhn digits as lcd: accuracy 0.300, Fréchet 40.00" in text
    assert "A (ti) drawn in mnistm: recognised 0.100, Fréchet 9.00 / 2.00" in text
    nums = ctx.numbers["personalize"]
    assert [r["acc"] for r in nums["runs"]] == [0.9, 0.995, 0.75]


def test_missing_results_say_what_to_run(tmp_path, monkeypatch):
    monkeypatch.setenv(ENV, str(tmp_path / "none.json"))
    ctx = make_ctx(tmp_path)
    section = html.unescape(personalize(ctx))
    assert "No personalization results" in section and BENCH_COMMAND in section and "<img" not in section
    assert ctx.numbers["personalize"] == {"results": None}


def test_missing_grid_and_broken_file_are_notes(tmp_path, monkeypatch):
    path = fake_results(tmp_path / "results", grid=False)
    monkeypatch.setenv(ENV, str(path))
    section = personalize(make_ctx(tmp_path))
    assert "<img" not in section and "grid" in section and len(rows(section)) == 3
    data = json.loads(path.read_text())
    del data["runs"][0]["scores"]
    path.write_text(json.dumps(data))
    ctx = make_ctx(tmp_path / "b")
    section = html.unescape(personalize(ctx))
    assert "could not be read" in section and "not the format" in section
    path.write_text("{not json")
    assert "could not be read" in personalize(make_ctx(tmp_path / "c"))


@pytest.mark.parametrize("n_train", [20, 7])
def test_comparison_grid_rows(n_train):
    train = np.zeros((n_train, 28, 28, 3), np.uint8)
    gen = {"ti": np.zeros((20, 28, 28, 3), np.uint8), "lora": np.zeros((10, 28, 28, 3), np.uint8)}
    im = comparison_grid(train, gen, "title")
    rows_needed = -(-n_train // 10) + 2 + 1
    assert im.height >= rows_needed * 56 and im.width >= 10 * 56
