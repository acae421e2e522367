import csv
import html
import json
import re
import shlex
import shutil

import numpy as np
import pytest
from PIL import Image

from difflab.cli import build_parser, main
from difflab.report.cli import config_from_args
from difflab.report.config import ReportConfig
from difflab.report.html import check_links
from difflab.report.run import report_command

from .conftest import TINY_CFG, make_ti_folder

FIGURES = ["digits/mnistm_grid.png", "digits/svhn_grid.png", "reverse.png", "sweep/sweep.png", "sweep/strip.png",
           "fewstep/fewstep.png", "fewstep/student/svhn_grid.png", "ddim/eta_grid/eta_grid.png",
           "ddim/interpolation/interpolation.png", "ddim/interpolation/norms.png",
           "ddim/inversion.png", "clip/cases.png", "ti/dog.png"]


def pixels(path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def test_page_figures_captions_and_links(report_run):
    out, info, cfg, _ = report_run
    page = (out / "index.html").read_text(encoding="utf-8")
    assert check_links(out / "index.html") == []
    assert info["device"] == "cpu" and "networks on cpu." in page  # where the networks ran, said on the page
    imgs = re.findall(r'<img src="([^"]+)"', page)
    assert imgs == FIGURES  # every figure, in reading order, and nothing else
    figures = re.findall(r"<figure>(.*?)</figure>", page, re.S)
    assert len(figures) == len(imgs)
    for f in figures:  # each says what it shows and how to get it again
        caption = re.search(r"<figcaption>(.*?)</figcaption>", f, re.S).group(1)
        assert len(caption) > 150 and "difflab " in caption, caption
    for anchor in ("digits", "reverse", "sweep", "training", "fewstep", "personalize", "eta", "interpolation",
                   "inversion", "zeroshot", "ti", "run"):
        assert f'<section id="{anchor}">' in page
    assert "https://" not in page and "http://" not in page and "<script" not in page
    assert "pixel-identical" in page and "DIFFERENT" not in page
    data = json.loads((out / "report.json").read_text())
    assert data["numbers"]["reverse"]["identical_to_generated"] == {"mnistm": True, "svhn": True}
    assert set(data["sections"]) == {"digits", "reverse", "sweep", "training", "fewstep", "personalize", "eta",
                                     "interpolation", "inversion", "zeroshot", "ti"}
    assert [r["nfe_per_image"] for r in data["numbers"]["fewstep"]["candidates"]][::3] == [40, 4]
    assert data["total_s"] >= sum(data["sections"].values()) and data["machine"]["cores"] >= 1
    assert len(data["numbers"]["sweep"]) == len(cfg.sweep_scales)
    assert "80.50" in page and "PASS" in page and "FAIL" in page  # the textual-inversion scores table
    assert (out / "ti" / "scores.json").is_file()


def test_check_links_reports_each_kind_of_broken_link(tmp_path):
    (tmp_path / "sub").mkdir()
    Image.new("RGB", (4, 4)).save(tmp_path / "sub" / "a b.png")
    (tmp_path / "index.html").write_text(
        '<html><body id="top"><img src="sub/a%20b.png"><img src="missing.png"><img src="/etc/hostname">'
        '<img src="../outside.png"><a href="http://example.com/x.png">x</a><a href="#top">t</a>'
        '<a href="#nowhere">n</a><img src="data:image/png;base64,AAAA"><img src="sub"></body></html>')
    problems = check_links(tmp_path / "index.html")
    expected = ['img src="missing.png": file not found', 'img src="/etc/hostname": absolute path',
                'img src="../outside.png": points outside', 'a href="http://example.com/x.png": not a relative',
                'a href="#nowhere": no element', 'img src="sub": file not found']
    assert len(problems) == len(expected)
    for p, e in zip(problems, expected):
        assert p.startswith(e), (p, e)


COMMANDS = {  # command prefix -> files it must rewrite identically
    "difflab digits generate": ["digits/mnistm/0_001.png", "digits/svhn/9_002.png", "digits/svhn_grid.png"],
    "difflab digits reverse": ["reverse.png"],
    "difflab digits sweep": ["sweep/strip.png", "sweep/sweep.png", "sweep/guidance_2/mnistm/5_001.png"],
    "difflab ddim eta-grid": ["ddim/eta_grid/eta_grid.png"],
    "difflab ddim interpolate": ["ddim/interpolation/interpolation.png", "ddim/interpolation/norms.png"],
    "difflab ddim invert": ["ddim/inversion/reconstructed/0_001.png", "ddim/inversion/reconstructed/0_002.png"],
    "difflab clip zeroshot": ["clip/cases.png"],
}


def test_caption_commands_regenerate_the_files(report_run, tmp_path, capsys):
    out = report_run[0]
    page = (out / "index.html").read_text(encoding="utf-8")
    commands = [html.unescape(c) for c in re.findall(r"<pre><code>(.*?)</code></pre>", page, re.S)]
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    for prefix, files in COMMANDS.items():
        # the few-step section's own generate commands are run by tests/report/test_fewstep.py
        found = {c for c in commands if c.startswith(prefix + " ") and str(out / "fewstep") not in c}
        assert len(found) == 1, (prefix, found)
        argv = shlex.split(found.pop().replace(str(out), str(copy)))
        assert main(argv[1:]) == 0, argv
        for f in files:
            assert np.array_equal(pixels(out / f), pixels(copy / f)), f
    # the eval command gives the table's numbers; the sweep CSV matches apart from the timings
    (eval_cmd,) = [c for c in commands if c.startswith("difflab digits eval ")]
    assert main(shlex.split(eval_cmd.replace(str(out), str(copy)))[1:]) == 0
    a, b = (json.loads((d / "digits" / "eval.json").read_text()) for d in (out, copy))
    assert a["domains"]["mnistm"]["acc"] == b["domains"]["mnistm"]["acc"]
    assert a["domains"]["svhn"]["fd_generated_vs_real"] == pytest.approx(b["domains"]["svhn"]["fd_generated_vs_real"])
    rows = [list(csv.DictReader(open(d / "sweep" / "sweep.csv"))) for d in (out, copy)]
    for r in rows:
        for row in r:
            row.pop("seconds")
    assert rows[0] == rows[1]
    capsys.readouterr()


def test_report_command_round_trips(report_run):
    out, info, cfg, kw = report_run
    argv = shlex.split(info["command"])
    assert argv[:3] == ["difflab", "report", str(out)] and "--overwrite" in argv
    args = build_parser().parse_args(argv[1:])
    assert config_from_args(args) == cfg
    assert args.student == str(kw["student_path"])
    assert args.model == str(kw["model_path"]) and args.ti == str(kw["ti"]) and args.data_root == str(kw["data_root"])
    assert config_from_args(build_parser().parse_args(shlex.split(report_command(out, cfg))[1:])) == cfg
    assert report_command(out, ReportConfig()) == f"difflab report {out} --overwrite"  # defaults are implied


def _small_args(tiny_model, classifiers, data_root) -> list[str]:
    args = ["--model", str(tiny_model[0]), "--mnistm-classifier", str(classifiers["mnistm"]),
            "--svhn-classifier", str(classifiers["svhn"]), "--data-root", str(data_root)]
    for k, v in TINY_CFG.items():
        v = ",".join(f"{x:g}" for x in v) if isinstance(v, tuple) else str(v)
        args += [f"--{k.replace('_', '-')}", v]
    return args


def test_bad_input_fails_fast_in_one_line(tmp_path, tiny_model, classifiers, data_root, zeroshot_inputs, capsys):
    clip, images, labels = zeroshot_inputs
    broken_clip = tmp_path / "broken_clip"
    shutil.copytree(clip, broken_clip)
    (broken_clip / "model.safetensors").write_bytes(b"not weights")
    (tmp_path / "empty_ti").mkdir()
    full = tmp_path / "full"
    full.mkdir()
    (full / "mine.txt").write_text("keep")
    small = _small_args(tiny_model, classifiers, data_root)
    new = str(tmp_path / "new")
    cases = [
        ([str(full)], "output folder is not empty"),
        ([new, "--clip", str(tmp_path / "nope"), "--zeroshot", str(images), "--labels", str(labels)],
         "no such model folder"),
        ([new, "--clip", str(clip), "--zeroshot", str(images)], "need --labels id2label.json"),
        ([new, "--clip", str(broken_clip), "--zeroshot", str(images), "--labels", str(labels)], "cannot load"),
        ([new, "--zeroshot", str(images)], "--clip and --zeroshot go together"),
        ([new, "--timesteps", "1200,0"], "outside [0, 1000]"),
        ([new, "--timesteps", "0,500,100"], "not sorted"),
        ([new, "--sweep-scales", "0,-1"], "--sweep-scales must be in [0, 100]"),
        ([new, "--guidance", "-1"], "--guidance must be in [0, 100]"),
        ([new, "--etas", "0,2"], "--etas must be in [0, 1]"),
        ([new, "--ti", str(tmp_path / "empty_ti")], "no images in the `difflab ti generate` layout"),
        ([new, "--ti", str(tmp_path / "missing_ti")], "folder not found"),
    ]
    for argv, msg in cases:
        assert main(["report", argv[0], *small, *argv[1:]]) == 2
        err = capsys.readouterr().err
        assert msg in err and err.count("\n") == 1, (argv, err)
    assert (full / "mine.txt").read_text() == "keep" and sorted(p.name for p in full.iterdir()) == ["mine.txt"]
    assert not (tmp_path / "new").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging folder left


def test_ti_section_without_scores_says_how_to_get_them(tmp_path, tiny_model, classifiers, data_root):
    from difflab.report.run import run_report

    ti = make_ti_folder(tmp_path / "ti", scores=False)
    # grids and sweep of the same size: the sweep copies the grids' images at their scale
    cfg = ReportConfig(**{**TINY_CFG, "sweep_scales": (0.0, 1.5), "guidance": 1.5, "per_digit": 1, "invert_count": 1})
    run_report(tmp_path / "out", cfg, tiny_model[0], classifiers, data_root, ti=ti, progress=False)
    out = tmp_path / "out"
    page = (out / "index.html").read_text()
    assert "difflab ti score PROMPTS.json" in page and f"No {ti}/scores.json" in page
    assert check_links(out / "index.html") == []
    assert "w = 1.5 are those of the grids above" in page
    assert np.array_equal(pixels(out / "digits/svhn/8_001.png"), pixels(out / "sweep/guidance_1.5/svhn/8_001.png"))


@pytest.mark.gpu
def test_report_on_the_card(report_run, tmp_path):
    """`difflab report --device cuda`: every section runs, its networks on the card, and each caption's
    command names the card (scripts/gpu_check.sh runs this on a lent GPU)."""
    import dataclasses

    import torch

    from difflab.report.run import run_report

    _, info_cpu, cfg, kw = report_run
    out = tmp_path / "gpu"
    torch.cuda.reset_peak_memory_stats()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DIFFLAB_PERSONALIZE_RESULTS", str(tmp_path / "no_personalize_results.json"))
        info = run_report(out, dataclasses.replace(cfg, device="cuda"), progress=False, **kw)
    assert torch.cuda.max_memory_allocated() > 0
    assert info["sections"].keys() == info_cpu["sections"].keys()
    assert info["numbers"].keys() == info_cpu["numbers"].keys() and info["config"]["device"] == "cuda"
    assert info["device"] == f"cuda:0 ({torch.cuda.get_device_name(0)})"
    commands = [html.unescape(c) for c in re.findall(r"<pre><code>(.*?)</code></pre>",
                                                     (out / "index.html").read_text(encoding="utf-8"), re.S)]
    runs_networks = [c for c in commands if c.startswith(("difflab digits", "difflab ddim", "difflab clip"))
                     and not c.startswith("difflab digits info")]
    assert len(runs_networks) >= 8 and all("--device cuda" in c for c in runs_networks), commands
