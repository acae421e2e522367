import csv

import numpy as np
import pytest
from PIL import Image

from difflab.cli import main
from difflab.digits.generate import GenerateConfig, generate
from difflab.digits.sweep import COLUMNS, parse_scales, sweep
from difflab.errors import DifflabError


def test_sweep_same_seeds_csv_and_plots(tmp_path, tiny_model, classifiers, data_root):
    _, model, schedule = tiny_model
    cfg = GenerateConfig(per_digit=1, steps=2, batch_size=32, guidance=99.0)  # guidance is ignored
    rows = sweep(tmp_path / "sw", model, schedule, cfg, "0,2.5", classifiers, data_root, progress=False)
    assert [r["guidance"] for r in rows] == [0.0, 2.5]
    with open(tmp_path / "sw" / "sweep.csv", newline="") as f:
        table = list(csv.DictReader(f))
    assert list(table[0]) == COLUMNS and len(table) == 2
    for r, t in zip(rows, table):
        assert float(t["mnistm_acc"]) == pytest.approx(r["mnistm_acc"], abs=1e-6)
        assert 0 <= r["mnistm_acc"] <= 1 and r["mean_acc"] == pytest.approx((r["mnistm_acc"] + r["svhn_acc"]) / 2)
    # real vs real compares the same real images at every scale
    assert rows[0]["svhn_fd_real"] == rows[1]["svhn_fd_real"]
    # each scale is exactly `digits generate` with only --guidance changed
    generate(tmp_path / "ref", model, schedule, GenerateConfig(per_digit=1, steps=2, batch_size=32, guidance=2.5),
             progress=False)
    for m in ("mnistm", "svhn"):
        for d in (0, 9):
            a = np.asarray(Image.open(tmp_path / "sw" / "guidance_2.5" / m / f"{d}_001.png"))
            assert np.array_equal(a, np.asarray(Image.open(tmp_path / "ref" / m / f"{d}_001.png")))
    a0 = np.asarray(Image.open(tmp_path / "sw" / "guidance_0" / "svhn" / "3_001.png"))
    assert not np.array_equal(a0, np.asarray(Image.open(tmp_path / "ref" / "svhn" / "3_001.png")))
    for name in ("sweep.png", "strip.png"):
        with Image.open(tmp_path / "sw" / name) as im:
            assert im.width > 300 and im.height > 100
    assert (tmp_path / "sw" / "guidance_0" / "eval.json").is_file()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging folder left


def test_reuse_gives_the_same_files(tmp_path, tiny_model, classifiers, data_root):
    _, model, schedule = tiny_model
    cfg = GenerateConfig(per_digit=1, steps=2, batch_size=32)
    generate(tmp_path / "grids", model, schedule, GenerateConfig(per_digit=1, steps=2, batch_size=32, guidance=2.0),
             progress=False)
    a = sweep(tmp_path / "a", model, schedule, cfg, [1.0, 2.0], classifiers, data_root, progress=False)
    b = sweep(tmp_path / "b", model, schedule, cfg, [1.0, 2.0], classifiers, data_root, progress=False,
              reuse={2.0: tmp_path / "grids"})
    for ra, rb in zip(a, b):
        assert {k: v for k, v in ra.items() if k != "seconds"} == {k: v for k, v in rb.items() if k != "seconds"}
    for name in ("strip.png", "guidance_2/svhn/4_001.png", "guidance_2/mnistm_grid.png"):
        a_px, b_px = (np.asarray(Image.open(tmp_path / d / name)) for d in ("a", "b"))
        assert np.array_equal(a_px, b_px), name


@pytest.mark.parametrize("text,msg", [("-1,2", r"must be in \[0, 100\]"), ("1,nan", "finite"), ("1,1", "repeats"),
                                      ("1,x", "comma-separated numbers"), ("inf", "finite")])
def test_bad_scales(text, msg):
    with pytest.raises(DifflabError, match=msg):
        parse_scales(text)


def test_cli_errors_are_one_line(tmp_path, tiny_model, classifiers, capsys):
    out = tmp_path / "sw"
    out.mkdir()
    (out / "mine.txt").write_text("keep")
    base = ["digits", "sweep", "--model", str(tiny_model[0]), "--per-digit", "1", "--steps", "1",
            "--mnistm-classifier", str(classifiers["mnistm"]), "--svhn-classifier", str(classifiers["svhn"])]
    for argv, msg in (([str(tmp_path / "new"), "--guidance", "0,-2"], "--guidance must be in [0, 100]"),
                      ([str(out), "--guidance", "0,2"], "not empty"),
                      ([str(tmp_path / "new"), "--per-digit", "0"], "--per-digit must be at least 1")):
        assert main([*base, *argv]) == 2
        err = capsys.readouterr().err
        assert msg in err and err.count("\n") == 1, err
    assert (out / "mine.txt").read_text() == "keep" and not (tmp_path / "new").exists()
