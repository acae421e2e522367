"""Shared test set-up: fixed seeds, few threads (tests run beside other work on 2 cores)."""

import os

import pytest
import torch

torch.set_num_threads(int(os.environ.get("DIFFLAB_TEST_THREADS", "2")))


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
