"""`difflab` command line: a thin argparse layer over the API. No maths here.

Each job package has a `cli.py` with `register(subparsers)`; this module wires them up, runs the chosen
handler and applies the one error policy (docs/RELIABILITY.md):
- DifflabError (bad input): one line on stderr, exit 2;
- a request too big for memory (the machine's, or the GPU's): one line saying so, exit 2;
- any other exception is a bug in difflab: one line saying so and where the traceback was logged, exit 1.
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import os
import re
import sys
import tempfile
import traceback
from pathlib import Path

from difflab.errors import DifflabError

# job CLIs, imported at start-up: they must not import heavy optional packages at module level
JOB_CLIS = ("difflab.digits.cli", "difflab.ddim.cli", "difflab.clip.cli", "difflab.personalize.cli",
            "difflab.report.cli")
# torch's CPU allocator reports an impossible allocation as a RuntimeError, not a MemoryError
ALLOC_FAILED = re.compile(r"can't allocate memory: you tried to allocate (\d+) bytes|not enough memory")
# torch.cuda.OutOfMemoryError's text: "CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total ..."
GPU_ALLOC = re.compile(r"Tried to allocate ([\d.]+ [KMGT]?i?B)")
GPU_NAME = re.compile(r"GPU \d+")


class _Parser(argparse.ArgumentParser):
    """argparse with a one-line error (no usage block): bad flags read like every other difflab error.
    Subcommand parsers are built with the same class (add_subparsers uses type(parent))."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="difflab", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name in JOB_CLIS:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as e:
            if e.name and name.startswith(e.name):  # a job not built yet
                continue
            raise
        module.register(sub)
    return parser


def one_line(text: str) -> str:
    """Error text on one line: a message that quotes a multi-line library error must not spill."""
    return " ".join(text.split()) or "(no message)"


def log_dir() -> Path:
    """$DIFFLAB_LOG_DIR, else $XDG_STATE_HOME/difflab/logs, else ~/.local/state/difflab/logs."""
    if os.environ.get("DIFFLAB_LOG_DIR"):
        return Path(os.environ["DIFFLAB_LOG_DIR"])
    state = os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state"
    return Path(state) / "difflab" / "logs"


def write_crash_log(exc: BaseException, argv: list[str]) -> Path | None:
    """Write the traceback and the command to a fresh log file; a temp folder if the usual one is not
    writable; None if nothing is (the caller then says so instead of crashing again)."""
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    text = (f"difflab crash log\ncommand: difflab {' '.join(argv)}\npython: {sys.version.split()[0]}\n"
            f"cwd: {os.getcwd()}\n\n" + "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)))
    for folder in (log_dir(), Path(tempfile.gettempdir()) / f"difflab-logs-{os.getuid()}"):
        try:
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / f"crash-{stamp}-{os.getpid()}.log"
            path.write_text(text, encoding="utf-8")
            return path
        except OSError:
            continue
    return None


def _gpu_memory_message(exc: BaseException) -> str | None:
    """torch.cuda.OutOfMemoryError (a RuntimeError whose text runs over several lines) -> one line with the
    GPU and the size torch asked for, and the two ways out."""
    torch = sys.modules.get("torch")  # not imported yet: the error cannot be torch's, and importing costs ~1 s
    if torch is None or not isinstance(exc, torch.cuda.OutOfMemoryError):
        return None
    gpu, size = GPU_NAME.search(str(exc)), GPU_ALLOC.search(str(exc))
    return (f"{gpu[0] if gpu else 'the GPU'} ran out of memory{f' (asked for {size[1]} more)' if size else ''}; "
            "try a smaller --batch-size, or --device cpu")


def _memory_message(exc: BaseException) -> str | None:
    gpu = _gpu_memory_message(exc)
    if gpu is not None:
        return gpu
    if isinstance(exc, MemoryError):
        return "the request is too big for this machine's memory; ask for fewer items or a smaller batch"
    m = ALLOC_FAILED.search(str(exc)) if isinstance(exc, RuntimeError) else None
    if m is None:
        return None
    size = f" ({int(m[1]) / 2**30:,.1f} GiB in one allocation)" if m[1] else ""
    return f"the request is too big for this machine's memory{size}; ask for fewer items or a smaller batch"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    from difflab import runtime

    runtime.tune_allocator()  # before torch allocates anything: glibc's mmap churn costs up to 2x on CPU
    try:
        args = build_parser().parse_args(argv)
        return int(args.func(args) or 0)
    except DifflabError as e:
        print(f"difflab: error: {one_line(str(e))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("difflab: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # the last line of defence: every other exception is a bug
        memory = _memory_message(e)
        if memory is not None:
            print(f"difflab: error: {memory}", file=sys.stderr)
            return 2
        log = write_crash_log(e, argv)
        where = f"traceback in {log}" if log else "no log file could be written"
        print(f"difflab: internal error (a bug in difflab, please report it): {type(e).__name__}: "
              f"{one_line(str(e))[:300]}; {where}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
