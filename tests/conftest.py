"""Shared test set-up: fixed seeds, few threads (tests run beside other work on 2 cores), CPU devices.

Every test runs with DIFFLAB_DEVICE=cpu, so "auto" means the CPU even on a GPU machine: the CPU tests
compare exact values and must not move to a card. Tests marked `gpu` run on CUDA (auto = cuda) and are
skipped, with the reason shown, where there is none (scripts/gpu_check.sh runs them on a lent GPU).
"""

import os

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


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(autouse=True)
def _device(request, monkeypatch):
    if request.node.get_closest_marker("gpu") is not None:
        monkeypatch.delenv("DIFFLAB_DEVICE", raising=False)  # auto = CUDA for the gpu tests
