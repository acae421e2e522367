"""Shared test set-up: fixed seeds, few threads (tests run beside other work on 2 cores), CPU devices.

Every test runs with DIFFLAB_DEVICE=cpu, so "auto" means the CPU even on a GPU machine: the CPU tests
compare exact values and must not move to a card. Tests marked `gpu` run on CUDA (auto = cuda) and are
skipped, with the reason shown, where there is none (scripts/gpu_check.sh runs them on a lent GPU).
"""

import importlib.util
import os
from pathlib import Path

import pytest
import torch

torch.set_num_threads(int(os.environ.get("DIFFLAB_TEST_THREADS", "2")))
# set at import, not in a function fixture: session fixtures and subprocesses (torchrun, the CLI) see it too
os.environ["DIFFLAB_DEVICE"] = "cpu"

NO_CUDA = "needs a CUDA GPU: torch.cuda.is_available() is False here (run scripts/gpu_check.sh on one)"


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason=NO_CUDA)
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def load_script():
    """A loader of the repo's stand-alone scripts (scripts/, benchmarks/) as modules: load_script("a/b.py")."""
    root = Path(__file__).resolve().parents[1]

    def load(relative: str):
        path = root / relative
        spec = importlib.util.spec_from_file_location(path.stem, path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    return load


@pytest.fixture
def one_thread():
    """Tiny-model tests on one thread, then the suite's setting again: each op is too small to split, and
    on a busy 2-core machine two threads wait on each other (measured: 3 tiny training steps 14 s vs 0.1 s;
    tests/personalize/test_train.py 115 s vs 22 s; a DDIM 20 report candidate 23 s vs 2.4 s)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(autouse=True)
def _device(request, monkeypatch):
    if request.node.get_closest_marker("gpu") is not None:
        monkeypatch.delenv("DIFFLAB_DEVICE", raising=False)  # auto = CUDA for the gpu tests
