"""Process-wide speed settings that `difflab ...` applies to itself at start-up.

glibc's malloc returns large freed blocks to the kernel (mmap/munmap, heap trimming) and maps them again
on the next call: on the 28x28 UNet's activation sizes that cost millions of page faults and made
generation up to 2x slower and its timings swing (measured: 200 digits 36.2 s plain vs 26.7 s tuned on a
2-core EPYC VM; docs/RESULTS.md). The fix used to live in the Makefile as MALLOC_* environment
variables, which a user typing `difflab` never got. `mallopt` sets the same three knobs from inside the
process, so everyone gets them. Values the user set through the environment win.

`machine()` describes where a measurement ran, in one format for the report and every benchmark.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import platform
from pathlib import Path

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


# ---------------------------------------------------------------------------------- machine description
def cpu_name() -> str:
    """The CPU's marketing name from /proc/cpuinfo (e.g. 'AMD EPYC 7B13'); off Linux what platform knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def load_average() -> list[float]:
    """The 1, 5 and 15 minute load averages, 2 decimals (above the core count: other work competed for
    the CPU); [] where the platform has none."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


def machine(**extra) -> dict:
    """Where a measurement runs, taken when it starts: cpu, cores, torch_threads, gpus (CUDA device names,
    [] without), cuda (torch's CUDA version or None), python, torch, platform and load_average_at_start,
    then the `extra` keys (a note, say). Call `finish_machine` on it when the measurement ends."""
    import torch

    from difflab.device import cuda_count

    return {"cpu": cpu_name(), "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "gpus": [torch.cuda.get_device_name(i) for i in range(cuda_count())], "cuda": torch.version.cuda,
            "python": platform.python_version(), "torch": torch.__version__, "platform": platform.platform(),
            "load_average_at_start": load_average(), **extra}


def machine_line(processes: int | None = None, device=None) -> str:
    """The machine in one line for a file's own record (a checkpoint's `train_run`, a concept.json):
    'CPU, N cores[, P process(es)], torch V[, on GPU NAME]' (the card's name when `device` is a CUDA one,
    so a record says it was made on a card, not only that one was there)."""
    import torch

    from difflab.device import card_name

    procs = "" if processes is None else f", {processes} process(es)"
    card = None if device is None else card_name(device)
    return f"{cpu_name()}, {os.cpu_count()} cores{procs}, torch {torch.__version__}" + (f", on {card}" if card else "")


def finish_machine(info: dict) -> dict:
    """Add load_average_at_end (now) to a `machine()` dict; returns the same dict."""
    info["load_average_at_end"] = load_average()
    return info
