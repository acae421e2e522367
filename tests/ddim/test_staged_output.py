"""`difflab ddim sample|eta-grid|interpolate|invert|noise` write through `staged_output_dir`: a run that
fails in the middle leaves no OUT (and no staging folder or lock), and under --overwrite keeps the old OUT."""

import dataclasses

import pytest

import difflab.ddim.cli as ddim_cli
import difflab.ddim.noise as ddim_noise
import difflab.ddim.run as ddim_run
from difflab.cli import main
from difflab.errors import DifflabError


def run(capsys, *argv):
    rc = main(["ddim", *map(str, argv)])
    _, err = capsys.readouterr()
    return rc, err


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, digits_ckpt):
    """A noise folder and an image folder (sampled from it) for the commands that read one."""
    d = tmp_path_factory.mktemp("inputs")
    assert main(["ddim", "noise", str(d / "noise"), "--count", "2", "--seed", "1"]) == 0
    assert main(["ddim", "sample", str(d / "noise"), str(d / "img"), "--digits-model", str(digits_ckpt),
                 "--steps", "3"]) == 0
    return d


def fail_on_call(n: int, real):
    """`real`, raising a DifflabError on its n-th call."""
    calls = [0]

    def f(*args, **kwargs):
        calls[0] += 1
        if calls[0] == n:
            raise DifflabError(f"failed on call {n}")
        return real(*args, **kwargs)

    return f


def commands(inputs, out):
    return {"sample": ["sample", inputs / "noise", out],
            "eta-grid": ["eta-grid", out, "--noise-dir", inputs / "noise", "--columns", "2", "--etas", "0", "1"],
            "interpolate": ["interpolate", out, "--num", "3"],
            "invert": ["invert", inputs / "img", out]}


def left_beside(out) -> list[str]:
    return sorted(p.name for p in out.parent.iterdir() if p.name != "old")


@pytest.mark.parametrize("command", ["sample", "eta-grid", "interpolate", "invert"])
def test_model_failing_mid_run_leaves_nothing_and_keeps_the_old_output(tmp_path, capsys, monkeypatch, inputs,
                                                                        digits_ckpt, command):
    real_model = ddim_cli._model
    monkeypatch.setattr(ddim_cli, "_model",
                        lambda args: dataclasses.replace(m := real_model(args), fn=fail_on_call(2, m.fn)))
    model_args = ["--digits-model", digits_ckpt, "--steps", "3"]
    out = tmp_path / "runs" / "out"
    rc, err = run(capsys, *commands(inputs, out)[command], *model_args)
    assert rc == 2 and "failed on call 2" in err and err.count("\n") == 1
    assert not out.exists() and left_beside(out) == []  # no OUT, no .out.partial-*, no .out.lock

    out.mkdir()
    (out / "old.txt").write_text("the previous run")
    rc, err = run(capsys, *commands(inputs, out)[command], *model_args, "--overwrite")
    assert rc == 2 and "failed on call 2" in err
    assert [p.name for p in out.iterdir()] == ["old.txt"] and left_beside(out) == ["out"]


def test_write_failing_mid_run_keeps_the_old_output(tmp_path, capsys, monkeypatch, inputs, digits_ckpt):
    out = tmp_path / "out"
    out.mkdir()
    (out / "old.txt").write_text("the previous run")
    monkeypatch.setattr(ddim_run, "save_png", fail_on_call(2, ddim_run.save_png))  # after 00.png is written
    argv = ["sample", inputs / "noise", out, "--digits-model", digits_ckpt, "--steps", "3", "--overwrite"]
    rc, err = run(capsys, *argv)
    assert rc == 2 and "failed on call 2" in err
    assert [p.name for p in out.iterdir()] == ["old.txt"] and left_beside(out) == ["out"]
    monkeypatch.undo()
    assert run(capsys, *argv)[0] == 0  # and a run that succeeds replaces it whole
    assert sorted(p.name for p in out.iterdir()) == ["00.png", "01.png"] and left_beside(out) == ["out"]


def test_noise_failing_mid_run_leaves_nothing(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(ddim_noise, "save_noise", fail_on_call(2, ddim_noise.save_noise))
    out = tmp_path / "noise"
    rc, err = run(capsys, "noise", out, "--count", "3")
    assert rc == 2 and "failed on call 2" in err and not out.exists() and left_beside(out) == []
