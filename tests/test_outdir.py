"""Output folders (difflab.outdir, re-exported by difflab.io): lock, staged swap, stale stages, umask."""

import os
import signal
import subprocess
import sys
import textwrap

import pytest

from difflab.errors import DifflabError
from difflab.io import atomic_path, inplace_output_dir, staged_output_dir


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def _siblings(out):
    return sorted(p.name for p in out.parent.iterdir() if p.name != out.name)


def test_success_swaps_in_and_failure_keeps_the_old_folder(tmp_path):
    out = tmp_path / "out"
    with staged_output_dir(out, overwrite=False) as stage:
        assert stage.parent == tmp_path and not out.exists()
        (stage / "a.txt").write_text("first")
    assert (out / "a.txt").read_text() == "first" and _siblings(out) == []
    with pytest.raises(DifflabError, match="not empty"):
        with staged_output_dir(out, overwrite=False):
            pass
    with pytest.raises(RuntimeError):
        with staged_output_dir(out, overwrite=True) as stage:
            (stage / "b.txt").write_text("second")
            raise RuntimeError("run failed")
    assert sorted(p.name for p in out.iterdir()) == ["a.txt"] and _siblings(out) == []
    with staged_output_dir(out, overwrite=True) as stage:
        (stage / "b.txt").write_text("second")
    assert sorted(p.name for p in out.iterdir()) == ["b.txt"] and _siblings(out) == []


def test_failed_run_leaves_no_folder(tmp_path):
    with pytest.raises(DifflabError):
        with staged_output_dir(tmp_path / "new", overwrite=False):
            raise DifflabError("bad input found late")
    assert list(tmp_path.iterdir()) == []


def test_second_run_into_the_same_folder_is_refused(tmp_path):
    out = tmp_path / "out"
    with staged_output_dir(out, overwrite=False):
        with pytest.raises(DifflabError, match=rf"another difflab run \(pid {os.getpid()}\)"):
            with staged_output_dir(out, overwrite=True):
                pass
        with pytest.raises(DifflabError, match="another difflab run"):
            with inplace_output_dir(out, resume=True):
                pass
    with staged_output_dir(out, overwrite=True):  # released: the next run goes ahead
        pass


def test_killed_run_holds_the_lock_only_while_alive_and_its_stage_is_removed(tmp_path):
    out = tmp_path / "out"
    child = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys, time
        from difflab.outdir import staged_output_dir
        with staged_output_dir({str(out)!r}, False) as stage:
            (stage / "half.png").write_bytes(b"x")
            print("ready", flush=True)
            time.sleep(120)
        """)], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "ready"
        with pytest.raises(DifflabError, match=rf"another difflab run \(pid {child.pid}\)"):
            with staged_output_dir(out, overwrite=False):
                pass
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    assert any(".out.partial-" in n for n in _siblings(out))  # what SIGKILL leaves behind
    with staged_output_dir(out, overwrite=False) as stage:
        assert _siblings(out) == [".out.lock", stage.name]  # the dead run's stage is gone
        (stage / "ok").write_text("1")
    assert _siblings(out) == [] and (out / "ok").is_file()


def test_stale_folders_of_dead_runs_only(tmp_path):
    out = tmp_path / "out"
    dead, alive = _dead_pid(), os.getppid()
    for name in (f".out.partial-{dead}-abc", f".out.partial-{alive}-def", ".out.partial-nopid", ".other.partial-1-x"):
        (tmp_path / name).mkdir()
    (tmp_path / f".out.old-{dead}").mkdir()  # killed mid-swap: OUT moved aside, new one not yet in
    (tmp_path / f".out.old-{dead}" / "previous.png").write_bytes(b"p")
    with staged_output_dir(out, overwrite=True):
        pass
    assert _siblings(out) == sorted([f".out.partial-{alive}-def", ".out.partial-nopid", ".other.partial-1-x"])
    # the moved-aside output was the only copy: it was put back before this run replaced it
    assert not (out / "previous.png").exists()
    (tmp_path / f".out.old-{dead}").mkdir()
    (tmp_path / f".out.old-{dead}" / "again.png").write_bytes(b"p")
    import shutil

    shutil.rmtree(out)
    with pytest.raises(DifflabError, match="not empty"):  # restored, so it now counts as existing output
        with staged_output_dir(out, overwrite=False):
            pass
    assert (out / "again.png").is_file()


def test_permissions_follow_the_umask(tmp_path):
    old = os.umask(0o027)
    try:
        with staged_output_dir(tmp_path / "out", overwrite=False) as stage:
            (stage / "sub").mkdir()
            with atomic_path(stage / "sub" / "f.bin") as tmp:
                tmp.write_bytes(b"1")
    finally:
        os.umask(old)
    assert (tmp_path / "out").stat().st_mode & 0o777 == 0o750
    assert (tmp_path / "out" / "sub" / "f.bin").stat().st_mode & 0o777 == 0o640


def test_inplace_keeps_partial_output_but_not_an_empty_folder(tmp_path):
    out = tmp_path / "run"
    with pytest.raises(RuntimeError):
        with inplace_output_dir(out):
            raise RuntimeError("failed before writing")
    assert not out.exists()
    with pytest.raises(RuntimeError):
        with inplace_output_dir(out) as d:
            (d / "checkpoint").write_text("step 5")
            raise RuntimeError("killed later")
    assert (out / "checkpoint").is_file()  # what --resume needs
    with pytest.raises(DifflabError, match="not empty"):
        with inplace_output_dir(out):
            pass
    with inplace_output_dir(out, resume=True) as d:
        assert (d / "checkpoint").is_file()
    with inplace_output_dir(out, overwrite=True) as d:
        assert list(d.iterdir()) == []



def test_inplace_with_run_files_counts_only_those_and_removes_nothing(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "classifier.bin").write_text("other")  # someone else's file in the folder: never a refusal
    with inplace_output_dir(out, run_files=["ckpt"]) as d:
        (d / "ckpt").write_text("step 5")
    with pytest.raises(DifflabError, match=r"already holds a run \(ckpt\); pass --resume latest to continue it, "
                                           "or --overwrite"):
        with inplace_output_dir(out, run_files=["ckpt"], resume_flag="--resume latest"):
            pass
    for kw in ({"resume": True}, {"overwrite": True}):  # neither empties the folder
        with inplace_output_dir(out, run_files=["ckpt"], **kw):
            pass
    assert sorted(p.name for p in out.iterdir()) == ["ckpt", "classifier.bin"]


def test_staged_output_dir_refusals(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(DifflabError, match="not a folder"):
        with staged_output_dir(tmp_path / "file", overwrite=True):
            pass
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    with pytest.raises(DifflabError, match="not empty"):
        with staged_output_dir(tmp_path / "full", overwrite=False):
            pass
    assert (tmp_path / "full" / "x").read_text() == "x"
    with staged_output_dir(tmp_path / "full", overwrite=True) as stage:
        assert list(stage.iterdir()) == []
    assert list((tmp_path / "full").iterdir()) == []


def test_symlinked_output_is_replaced_without_touching_its_target(tmp_path):
    (tmp_path / "real").mkdir()
    (tmp_path / "real" / "keep.txt").write_text("theirs")
    (tmp_path / "out").symlink_to(tmp_path / "real")
    with staged_output_dir(tmp_path / "out", overwrite=True) as stage:
        (stage / "new.txt").write_text("ours")
    assert not (tmp_path / "out").is_symlink() and (tmp_path / "out" / "new.txt").is_file()
    assert (tmp_path / "real" / "keep.txt").read_text() == "theirs"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "real"]
