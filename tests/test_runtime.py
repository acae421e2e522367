"""`difflab` tunes glibc's allocator itself: checked by its effect, not by reading our own variables."""

import subprocess
import sys

import pytest

PROBE = r"""
import ctypes, sys
libc = ctypes.CDLL("libc.so.6")
class MallInfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                               "fsmblks", "uordblks", "fordblks", "keepcost")]
libc.mallinfo2.restype = MallInfo2
libc.malloc.restype = ctypes.c_void_p
libc.malloc.argtypes = [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
if sys.argv[1] == "tuned":
    from difflab.runtime import tune_allocator
    assert tune_allocator()["mmap_threshold"] == 32 * 1024 * 1024
before = libc.mallinfo2().hblkhd
p = libc.malloc(8 * 1024 * 1024)  # 8 MiB: above glibc's default mmap threshold, below ours
during = libc.mallinfo2().hblkhd
libc.free(p)
print(during - before)
"""


def _mmapped_bytes(mode: str) -> int:
    env = {"PATH": "/usr/bin:/bin"}  # no MALLOC_* variables from the Makefile
    out = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, env=env, check=True)
    return int(out.stdout.strip())


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc only")
def test_tuned_allocator_keeps_large_blocks_on_the_heap():
    assert _mmapped_bytes("plain") >= 8 * 1024 * 1024  # glibc default: a fresh mmap per large block
    assert _mmapped_bytes("tuned") == 0  # ours: served from the heap, no page-fault storm


def test_cli_applies_it_at_start_up(monkeypatch):
    import difflab.cli
    import difflab.runtime

    called = []
    monkeypatch.setattr(difflab.runtime, "tune_allocator", lambda: called.append(1) or {})
    with pytest.raises(SystemExit):
        difflab.cli.main(["--help"])
    assert called
