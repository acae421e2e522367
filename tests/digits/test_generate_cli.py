"""`difflab digits generate` bad input: one line, exit 2, nothing written (issue 10's list)."""

import pytest
import torch

from difflab.cli import main as cli_main
from difflab.diffusion.schedule import NoiseSchedule
from difflab.models.digits import save_digit_model
from difflab.training.distill import make_student

STUDENT_META = {"student": {"steps": 4, "spacing": "trailing", "guidance_range": [1.0, 5.0], "guide": "digit"}}


def main(argv):
    try:
        return cli_main(argv)
    except SystemExit as e:  # argparse's own errors (unknown choice) exit from parse_args
        return e.code


@pytest.fixture
def models(tmp_path, tiny_unet):
    teacher, student = tmp_path / "teacher.safetensors", tmp_path / "student.safetensors"
    save_digit_model(teacher, tiny_unet, NoiseSchedule())
    save_digit_model(student, make_student(tiny_unet), NoiseSchedule(), STUDENT_META)
    return teacher, student


@pytest.mark.parametrize("flags, message", [
    (["--sampler", "euler"], "invalid choice"),
    (["--steps", "0"], "--steps must be at least 1"),
    (["--steps", "1001"], "1000 training timesteps"),
    (["--guidance", "nan"], "finite"),
    (["--guidance", "inf"], "finite"),
    (["--guidance-interval", "500,100"], "LO"),
    (["--guidance-interval", "0,1000"], "0"),
    (["--guidance-interval", "a,b"], "guidance interval must look like LO,HI"),
    (["--per-digit", "0"], "--per-digit"),
])
def test_teacher_bad_input(tmp_path, models, capsys, flags, message):
    out = tmp_path / "out"
    code = main(["digits", "generate", str(out), "--model", str(models[0]), *flags])
    err = capsys.readouterr().err.strip()
    assert code == 2 and message in err and "Traceback" not in err
    assert not out.exists()


@pytest.mark.parametrize("flags, message", [
    (["--steps", "8"], "supports --steps 4 only"),
    (["--sampler", "unipc"], "deterministic DDIM"),
    (["--guidance", "9"], "distilled for guidance in [1, 5]"),
    (["--guidance-interval", "81,578"], "applies to the teacher"),
])
def test_student_bad_input(tmp_path, models, capsys, flags, message):
    out = tmp_path / "out"
    code = main(["digits", "generate", str(out), "--model", str(models[1]), *flags])
    err = capsys.readouterr().err.strip()
    assert code == 2 and message in err and len(err.splitlines()) == 1
    assert not out.exists()


def test_unknown_model(tmp_path, capsys):
    code = main(["digits", "generate", str(tmp_path / "out"), "--model", str(tmp_path / "missing.safetensors")])
    assert code == 2 and "neither 'teacher', 'student' nor a readable model file" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_guidance_interval_runs_one_pass_outside(tmp_path, models, capsys):
    """A teacher run with an interval writes the layout; the interval's effect is tested in test_solvers."""
    out = tmp_path / "out"
    code = main(["digits", "generate", str(out), "--model", str(models[0]), "--per-digit", "1", "--steps", "4",
                 "--guidance-interval", "300,700", "--sampler", "dpmpp-2m"])
    assert code == 0 and len(list((out / "mnistm").iterdir())) == 10
    assert "dpmpp-2m 4 steps" in capsys.readouterr().out


def test_student_cli_default_steps(tmp_path, models, capsys):
    out = tmp_path / "out"
    assert main(["digits", "generate", str(out), "--model", str(models[1]), "--per-digit", "1"]) == 0
    assert "ddim 4 steps" in capsys.readouterr().out
    torch.manual_seed(0)


def test_default_model_is_the_student_but_the_teacher_for_concepts_reverse_and_sweep(tmp_path, models, capsys,
                                                                                      monkeypatch):
    from difflab.cli import build_parser
    from difflab.digits.cli import _generate_config
    from difflab.digits.generate import GenerateConfig
    from difflab.models import digits

    assert GenerateConfig().model_name() == "student"
    assert GenerateConfig(concepts=("c",)).model_name() == "teacher"
    assert GenerateConfig(model="teacher").model_name() == "teacher"
    assert GenerateConfig(model="x.safetensors", concepts=("c",)).model_name() == "x.safetensors"
    # the shipped names point at the tiny models: which one a bare command loads shows in its output
    monkeypatch.setitem(digits.SHIPPED, "teacher", models[0])
    monkeypatch.setitem(digits.SHIPPED, "student", models[1])
    assert main(["digits", "generate", str(tmp_path / "a"), "--per-digit", "1"]) == 0
    assert "student model, ddim 4 steps, guidance 3 on digit" in capsys.readouterr().out
    assert main(["digits", "generate", str(tmp_path / "b"), "--per-digit", "1", "--model", "student"]) == 0
    capsys.readouterr()
    first = sorted((tmp_path / "a" / "svhn").iterdir())[0]
    assert first.read_bytes() == (tmp_path / "b" / "svhn" / first.name).read_bytes()
    for command, extra in (("reverse", ["OUT.png"]), ("sweep", ["OUT"])):
        args = build_parser().parse_args(["digits", command, *extra])
        assert _generate_config(args, f"digits {command}").model == "teacher"
        args = build_parser().parse_args(["digits", command, *extra, "--model", "student"])
        assert _generate_config(args, f"digits {command}").model == "student"
