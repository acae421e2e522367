"""The one error policy of `difflab` (cli.main): bad input, too-big requests and bugs."""

import argparse

import pytest

from difflab import cli
from difflab.errors import DifflabError


def _run(monkeypatch, capsys, exc):
    def handler(args):
        raise exc

    def parser():
        p = argparse.ArgumentParser(prog="difflab")
        p.set_defaults(func=handler)
        return p

    monkeypatch.setattr(cli, "build_parser", parser)
    code = cli.main([])
    return code, capsys.readouterr().err


def test_bad_input_is_one_line_exit_2(monkeypatch, capsys):
    code, err = _run(monkeypatch, capsys, DifflabError("x.json: not valid JSON (line 1\n  col 2)"))
    assert code == 2 and err == "difflab: error: x.json: not valid JSON (line 1 col 2)\n"


def test_a_bug_is_one_line_with_the_traceback_in_a_log(monkeypatch, capsys, tmp_path):
    monkeypatch.setenv("DIFFLAB_LOG_DIR", str(tmp_path / "logs"))
    code, err = _run(monkeypatch, capsys, KeyError("oops"))
    assert code == 1 and err.count("\n") == 1 and "a bug in difflab" in err and "KeyError" in err
    logs = list((tmp_path / "logs").iterdir())
    assert len(logs) == 1 and str(logs[0]) in err
    text = logs[0].read_text()
    assert "Traceback (most recent call last)" in text and "KeyError: 'oops'" in text and "in handler" in text


def test_log_falls_back_to_a_temp_folder(monkeypatch, capsys, tmp_path):
    (tmp_path / "file").write_text("not a folder")
    monkeypatch.setenv("DIFFLAB_LOG_DIR", str(tmp_path / "file" / "logs"))
    monkeypatch.setenv("TMPDIR", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)  # re-read TMPDIR
    code, err = _run(monkeypatch, capsys, ValueError("bug"))
    assert code == 1 and f"traceback in {tmp_path / 'tmp'}" in err


@pytest.mark.parametrize("exc", [MemoryError(), RuntimeError(
    "[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: can't allocate memory: you tried to "
    "allocate 9408000000000000 bytes. Error code 12 (Cannot allocate memory)")])
def test_too_big_a_request_is_named_as_such(monkeypatch, capsys, tmp_path, exc):
    monkeypatch.setenv("DIFFLAB_LOG_DIR", str(tmp_path))
    code, err = _run(monkeypatch, capsys, exc)
    assert code == 2 and err.count("\n") == 1 and "too big for this machine's memory" in err
    assert list(tmp_path.iterdir()) == []  # not a bug: no crash log



@pytest.mark.parametrize("text, line", [
    ("CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity of 79.10 GiB of which 1.03 GiB "
     "is free.\nIncluding non-PyTorch memory, this process has 78.06 GiB memory in use. Of the allocated memory ...",
     "GPU 0 ran out of memory (asked for 2.00 GiB more)"),
    ("", "the GPU ran out of memory")])
def test_gpu_out_of_memory_is_one_line_with_the_ways_out(monkeypatch, capsys, tmp_path, text, line):
    import torch

    # constructible on CPU builds too, so the policy is tested without a GPU
    monkeypatch.setenv("DIFFLAB_LOG_DIR", str(tmp_path))
    code, err = _run(monkeypatch, capsys, torch.cuda.OutOfMemoryError(text))
    assert code == 2 and err == f"difflab: error: {line}; try a smaller --batch-size, or --device cpu\n"
    assert list(tmp_path.iterdir()) == []  # not a bug: no crash log


def test_interrupt_and_argparse_exits_are_left_alone(monkeypatch, capsys):
    code, err = _run(monkeypatch, capsys, KeyboardInterrupt())
    assert code == 130 and err == "difflab: interrupted\n"
    monkeypatch.undo()
    with pytest.raises(SystemExit) as e:
        cli.main(["no-such-command"])
    assert e.value.code == 2
