"""The few-step section of the report: candidates, counted network evaluations, plot, table, commands."""

import html
import re
import shlex

import numpy as np
import pytest
from PIL import Image

from difflab.cli import build_parser, main
from difflab.errors import DifflabError
from difflab.report.config import ReportConfig
from difflab.report.context import Context
from difflab.report.fewstep import candidates, fewstep, load_student
from difflab.report.run import report_command

NAMES = ["teacher-ddim20", "teacher-dpmpp2m-10", "teacher-dpmpp2m-10-interval"]


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def make_ctx(tmp_path, tiny_model, classifiers, data_root, student_path, **cfg) -> Context:
    path, model, schedule = tiny_model
    stage = tmp_path / "out"
    stage.mkdir(parents=True)
    # 1 image per digit and domain in one chunk: every candidate runs in well under a second (and so 1
    # image to invert: ReportConfig refuses more than --per-digit)
    cfg = ReportConfig(**{"per_digit": 1, "batch_size": 20, "invert_count": 1, **cfg})
    student = None if student_path is None else str(student_path)
    return Context(stage, str(stage), cfg, str(path), model, schedule, classifiers, str(data_root), progress=False,
                   report_command="difflab report OUT", student_path=student)


def table_rows(section: str) -> list[list[str]]:
    body = re.search(r"<table><thead>.*?</thead><tbody>(.*?)</tbody></table>", section, re.S).group(1)
    return [[html.unescape(c) for c in re.findall(r"<td>(.*?)</td>", r)] for r in re.findall(r"<tr>(.*?)</tr>", body)]


def interval_nfe(schedule, lo: int = 81, hi: int = 578) -> int:
    """Counted from the solver's own timesteps, not from the report: 2 rows per guided step, 1 otherwise."""
    from difflab.diffusion.solvers import make_sampler

    return sum(2 if lo <= t <= hi else 1 for t in make_sampler("dpmpp-2m", schedule, 10).timesteps.tolist())


def pixels(path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def test_section_with_student(tmp_path, tiny_model, tiny_student, classifiers, data_root):
    ctx = make_ctx(tmp_path, tiny_model, classifiers, data_root, tiny_student)
    section = fewstep(ctx)
    out = ctx.stage / "fewstep"
    plot = out / "fewstep.png"
    assert plot.stat().st_size > 20_000
    with Image.open(plot) as im:
        im.load()  # decodes the whole image
        assert im.width > 800 and im.height > 300
        assert np.asarray(im.convert("L")).std() > 10  # drawn on, not a blank canvas
    assert '<img src="fewstep/fewstep.png"' in section and '<img src="fewstep/student/svhn_grid.png"' in section
    assert (out / "student" / "svhn_grid.png").is_file()

    rows = table_rows(section)
    assert [r[0] for r in rows] == ["teacher DDIM 20 (CFG)", "teacher DPM++(2M) 10",
                                    "teacher DPM++(2M) 10, guided in t 81-578", "student DDIM 4"]
    guided = interval_nfe(tiny_model[2])
    assert 10 < guided < 20  # the interval really splits the 10 steps
    assert [float(r[1]) for r in rows] == [40, 20, guided, 4]
    assert rows[0][3] == "1.0x"
    nums = ctx.numbers["fewstep"]
    assert [r["name"] for r in nums["candidates"]] == [*NAMES, "student"]
    assert [r["nfe_per_image"] for r in nums["candidates"]] == [40, 20, guided, 4]
    assert nums["student_missing"] is None and nums["candidates"][0]["speedup"] == 1.0
    for r in nums["candidates"]:
        assert r["seconds"] > 0 and 0 <= r["mean_acc"] <= 1 and r["images"] == 20
        assert all(np.isfinite(r["fd"][m]) for m in ("mnistm", "svhn"))
        assert (out / r["name"] / "eval.json").is_file()

    # the commands: one per candidate; the student's names its file; they rewrite the same images
    commands = [html.unescape(c) for c in re.findall(r"<pre><code>(.*?)</code></pre>", section, re.S)]
    generate = [c for c in commands if c.startswith("difflab digits generate ")]
    # four candidates; the student's command shows again under its grid
    assert len(generate) == 5 and len(set(generate)) == 4 and "difflab report OUT" in commands
    student_cmd = [c for c in generate if "/fewstep/student " in c][0]
    assert f"--model {tiny_student}" in student_cmd and "--steps 4" in student_cmd
    copy = tmp_path / "copy"
    for name, cmd in (("student", student_cmd), (NAMES[2], [c for c in generate if f"/{NAMES[2]} " in c][0])):
        argv = shlex.split(cmd.replace(str(ctx.stage), str(copy)))
        assert main(argv[1:]) == 0, argv
        for f in ("mnistm/0_001.png", "svhn/9_001.png", "svhn_grid.png"):
            assert np.array_equal(pixels(out / name / f), pixels(copy / "fewstep" / name / f)), (name, f)


def test_missing_student_gives_a_note(tmp_path, tiny_model, classifiers, data_root):
    missing = tmp_path / "no_student.safetensors"
    ctx = make_ctx(tmp_path, tiny_model, classifiers, data_root, missing)
    section = fewstep(ctx)
    assert [r["name"] for r in ctx.numbers["fewstep"]["candidates"]] == NAMES
    assert len(table_rows(section)) == 3
    assert f"The distilled student is missing ({missing} not found)" in html.unescape(section)
    assert "student/svhn_grid.png" not in section and not (ctx.stage / "fewstep" / "student").exists()
    assert (ctx.stage / "fewstep" / "fewstep.png").is_file()


def test_candidates_without_generating(tmp_path, tiny_model, tiny_student, classifiers, data_root):
    # no student asked for, and a guidance the student was not distilled for: teacher only, with a note
    ctx = make_ctx(tmp_path, tiny_model, classifiers, data_root, None)
    todo, note = candidates(ctx)
    assert [c.name for c in todo] == NAMES and "no --student given" in note
    ctx = make_ctx(tmp_path / "b", tiny_model, classifiers, data_root, tiny_student, guidance=6.0)
    todo, note = candidates(ctx)
    assert [c.name for c in todo] == NAMES and "distilled for guidance in [1, 5]" in note
    ctx = make_ctx(tmp_path / "c", tiny_model, classifiers, data_root, tiny_student)
    todo, note = candidates(ctx)
    assert note is None and todo[-1].name == "student" and todo[-1].cfg.steps == 4
    assert todo[2].cfg.guidance_interval == (81, 578) and "--guidance-interval" in todo[2].flags


def test_student_flag_and_wrong_file(tmp_path, tiny_model, tiny_student, classifiers, capsys):
    assert build_parser().parse_args(["report", "x"]).student == "student"
    cmd = report_command(tmp_path / "r", ReportConfig(), student_path=tiny_student)
    assert build_parser().parse_args(shlex.split(cmd)[1:]).student == str(tiny_student)
    assert "--student" not in report_command(tmp_path / "r", ReportConfig())  # the shipped one is implied
    assert load_student(tmp_path / "missing.safetensors") is None
    with pytest.raises(DifflabError, match="not a distilled student"):
        load_student(tiny_model[0])
    # a teacher given as --student fails before any work, in one line
    argv = ["report", str(tmp_path / "new"), "--model", str(tiny_model[0]), "--student", str(tiny_model[0]),
            "--mnistm-classifier", str(classifiers["mnistm"]), "--svhn-classifier", str(classifiers["svhn"])]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "not a distilled student" in err and err.count("\n") == 1
    assert not (tmp_path / "new").exists()
