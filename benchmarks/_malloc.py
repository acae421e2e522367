"""glibc allocator settings for the benchmarks (the Makefile and scripts/train_release.sh export the same).

With glibc's default malloc, CPU timings on these tensor sizes swung up to 2x (millions of page faults).
glibc reads the variables only at process start, so `ensure()` re-executes the script with them; call it
before importing torch.
"""

import os
import sys

MALLOC = {"MALLOC_MMAP_THRESHOLD_": "33554432", "MALLOC_TRIM_THRESHOLD_": "4294967296",
          "MALLOC_TOP_PAD_": "1073741824"}


def ensure() -> None:
    if any(os.environ.get(k) != v for k, v in MALLOC.items()):
        os.execve(sys.executable, [sys.executable, *sys.argv], {**os.environ, **MALLOC})
