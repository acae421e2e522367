"""Process-wide speed settings that `difflab ...` applies to itself at start-up.

glibc's malloc returns large freed blocks to the kernel (mmap/munmap, heap trimming) and maps them again
on the next call: on the 28x28 UNet's activation sizes that cost millions of page faults and made
generation up to 2x slower and its timings swing (measured: 200 digits 36.2 s plain vs 26.7 s tuned on a
2-core EPYC VM; docs/RESULTS.md). The fix used to live in the Makefile as MALLOC_* environment
variables, which a user typing `difflab` never got. `mallopt` sets the same three knobs from inside the
process, so everyone gets them. Values the user set through the environment win.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

# mallopt parameter numbers from glibc's malloc.h
M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_THRESHOLD = -1, -2, -3
SETTINGS = {  # (mallopt parameter, value, the equivalent environment variable)
    "mmap_threshold": (M_MMAP_THRESHOLD, 32 * 1024 * 1024, "MALLOC_MMAP_THRESHOLD_"),  # glibc's maximum
    "trim_threshold": (M_TRIM_THRESHOLD, 2**31 - 1, "MALLOC_TRIM_THRESHOLD_"),  # never trim in practice
    "top_pad": (M_TOP_PAD, 1024 * 1024 * 1024, "MALLOC_TOP_PAD_"),  # grow the heap in 1 GiB of address space
}
_applied: dict[str, int] | None = None


def tune_allocator() -> dict[str, int]:
    """Apply the glibc settings once; return {name: value} of what was set (empty off glibc).

    Only address space is reserved by top_pad: pages are touched (and count as memory) when used.
    """
    global _applied
    if _applied is not None:
        return _applied
    _applied = {}
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to tune
        return _applied
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    for key, (param, value, env) in SETTINGS.items():
        if env in os.environ:  # the user's own choice, already read by glibc at start-up
            continue
        if mallopt(param, value) == 1:
            _applied[key] = value
    return _applied
