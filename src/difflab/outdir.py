"""Output folders: one run at a time per folder, built aside and swapped in only on success.

Policy for every command that writes a folder OUT (re-exported by `difflab.io`):
- lock: `.OUT.lock` beside OUT is held (fcntl.flock) for the whole run, so a second run into the same
  folder is refused with one line instead of silently replacing the first one's output. The kernel drops
  the lock when a process dies, so a SIGKILLed run never blocks the next one.
- staged: `staged_output_dir` builds the output in `.OUT.partial-PID-XXXX` and renames it onto OUT only
  when the block succeeds; a failed run leaves OUT as it was (or absent), never half-written or empty.
- stale: staging folders of dead runs (their PID is not alive) are removed when the next run takes the
  lock; an `.OUT.old-PID` left by a run killed mid-swap is moved back when OUT is missing (it is then
  the only copy of the previous output).
- permissions: folders follow the umask (mkdtemp alone makes them 0700).
`inplace_output_dir` is the variant for runs whose partial output must survive a crash (training
checkpoints, `--resume`): locked, but written in place; with `run_files` it shares OUT with other files
and only those names count as a previous run's.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

from difflab.errors import DifflabError

try:
    import fcntl
except ImportError:  # not POSIX: no locking there
    fcntl = None


def current_umask() -> int:
    """The process umask, read without changing it where /proc allows (os.umask can only set it, which
    is racy with threads)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):  # another user's process, or a nonsense pid: keep
        return True
    return True


def _prepare_parent(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise DifflabError(f"{out}: exists and is not a folder")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DifflabError(f"{out}: output folder is not writable ({e.strerror})") from None


def _refuse_non_empty(out: Path, overwrite: bool) -> bool:
    """True when OUT holds something (allowed only with overwrite)."""
    full = out.is_dir() and any(out.iterdir())
    if full and not overwrite:
        raise DifflabError(f"{out}: output folder is not empty (pass --overwrite to replace it)")
    return full


@contextlib.contextmanager
def output_lock(out_dir) -> Iterator[None]:
    """Hold `.OUT.lock` beside OUT exclusively for the block; refuse (one line) if another run holds it."""
    out = Path(out_dir)
    if fcntl is None:
        yield
        return
    lock = out.parent / f".{out.name}.lock"
    while True:
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError as e:
            raise DifflabError(f"{out}: cannot create the lock file {lock.name} ({e.strerror})") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise DifflabError(f"{out}: another difflab run (pid {holder}) is writing this folder; wait for it "
                               "or choose another output folder") from None
        except OSError as e:
            os.close(fd)
            if e.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS):
                raise DifflabError(f"{out}: cannot lock {lock.name} ({e.strerror})") from None
            fd = None  # a filesystem without locks (some network mounts): run unlocked rather than not at all
            break
        # the previous holder unlinks the file on release: if it did so between our open and flock, we
        # hold a lock on a dead inode that a third run cannot see, so start again on the live file
        try:
            if os.path.samestat(os.fstat(fd), os.stat(lock)):
                break
        except FileNotFoundError:
            pass
        os.close(fd)
    if fd is None:
        yield
        return
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())  # named in the refusal a second run prints
        yield
    finally:
        with contextlib.suppress(OSError):
            os.unlink(lock)  # while still held, so no run can lock the file being removed
        os.close(fd)


def _remove_stale(out: Path) -> None:
    """Called with the lock held: staging folders of dead runs go; a killed swap is undone."""
    stage = re.compile(re.escape(f".{out.name}.partial-") + r"(\d+)-")
    old = re.compile(re.escape(f".{out.name}.old-") + r"(\d+)$")
    for p in sorted(out.parent.iterdir()):
        m = stage.match(p.name) or old.match(p.name)
        if m is None or not p.is_dir() or _pid_alive(int(m[1])):
            continue
        if m.re is old and not out.exists():
            os.replace(p, out)  # killed between moving OUT aside and moving the new one in
        else:
            _remove(p)


def _remove(p: Path) -> None:
    """Remove a folder, or only the link when OUT was a symlink (rmtree refuses links; the folder it
    points to is not ours to delete)."""
    if p.is_symlink():
        p.unlink()
    else:
        shutil.rmtree(p, ignore_errors=True)


def _swap_in(stage: Path, out: Path) -> None:
    if out.exists() or out.is_symlink():
        old = out.parent / f".{out.name}.old-{os.getpid()}"
        if old.exists() or old.is_symlink():
            _remove(old)
        os.replace(out, old)
        os.replace(stage, out)
        _remove(old)
    else:
        os.replace(stage, out)


@contextlib.contextmanager
def _claim(out: Path) -> Iterator[None]:
    """What both kinds of output folder start with: the parent made, OUT locked for the block, and the
    leftovers of dead runs cleared (only safe once the lock says no live run owns them)."""
    _prepare_parent(out)
    with output_lock(out):
        _remove_stale(out)
        yield


@contextlib.contextmanager
def staged_output_dir(out_dir, overwrite: bool) -> Iterator[Path]:
    """Yield a hidden staging folder beside OUT; on success it replaces OUT, on failure it is deleted.

    Refuses a non-empty OUT unless `overwrite`, and a folder another run is writing. An existing OUT is
    replaced only when the block succeeds, so a failed run never costs the previous output.
    """
    out = Path(out_dir)
    with _claim(out):
        _refuse_non_empty(out, overwrite)
        try:
            stage = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-{os.getpid()}-", dir=out.parent))
        except OSError as e:
            raise DifflabError(f"{out}: output folder is not writable ({e.strerror})") from None
        try:
            os.chmod(stage, 0o777 & ~current_umask())
            yield stage
            _swap_in(stage, out)
        finally:
            shutil.rmtree(stage, ignore_errors=True)


@contextlib.contextmanager
def inplace_output_dir(out_dir, overwrite: bool = False, resume: bool = False, run_files: Sequence[str] = (),
                       resume_flag: str = "--resume") -> Iterator[Path]:
    """Locked, but written in place: for runs whose partial output must survive a crash (checkpoints to
    resume from, images `--resume` keeps). A non-empty OUT is refused unless `resume` (keep it) or
    `overwrite` (emptied first). A folder this run created and left empty is removed on failure.

    `run_files`: for a folder shared with other files (digits train: scripts/train_release.sh keeps its
    classifiers beside the run), the names this kind of run writes. Then only those make OUT taken
    (refused unless `resume` or `overwrite`; the refusal names `resume_flag`) and nothing is ever removed:
    an overwriting run replaces its files as it writes them."""
    out = Path(out_dir)
    with _claim(out):
        if run_files:
            _refuse_run_files(out, run_files, resume or overwrite, resume_flag)
        elif not resume and _refuse_non_empty(out, overwrite):
            shutil.rmtree(out)
        created = not out.exists()
        _make_writable_dir(out)
        try:
            yield out
        except BaseException:
            if created and out.is_dir() and not any(out.iterdir()):
                out.rmdir()
            raise


def _refuse_run_files(out: Path, run_files: Sequence[str], allowed: bool, resume_flag: str) -> None:
    found = [name for name in run_files if (out / name).exists()]
    if found and not allowed:
        raise DifflabError(f"{out}: already holds a run ({', '.join(found)}); pass {resume_flag} to continue "
                           "it, or --overwrite to start again")


def _make_writable_dir(out: Path) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".write_test"
        probe.touch()
        probe.unlink()
    except OSError as e:
        raise DifflabError(f"{out}: output folder is not writable ({e.strerror})") from None

