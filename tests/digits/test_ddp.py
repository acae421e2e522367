"""Data-parallel training on 2 CPU processes (gloo), launched exactly as a multi-node run is: torchrun with
a c10d rendezvous endpoint. Every rank's full state is compared tensor by tensor, not by a checksum."""

import os
import socket
import subprocess
import sys
from pathlib import Path

import torch

from difflab.io import load_checkpoint
from difflab.models.unet import ConditionalUNet

from .conftest import TINY

WORKER = Path(__file__).with_name("ddp_worker.py")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_ranks(out: Path, device: str, nproc: int = 2, env: dict | None = None) -> list[dict]:
    """torchrun --nnodes 1 --nproc_per_node N --rdzv-backend c10d --rdzv-endpoint 127.0.0.1:PORT (the
    multi-node command with one node) on ddp_worker.py; returns each rank's saved state."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc_per_node", str(nproc),
           "--rdzv-backend", "c10d", "--rdzv-endpoint", f"127.0.0.1:{free_port()}", str(WORKER), str(out), device]
    r = subprocess.run(cmd, env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-4000:]
    return [torch.load(out / f"rank{r}.pt") for r in range(nproc)]


def assert_same_state(a: dict, b: dict, what: str) -> None:
    assert a.keys() == b.keys(), what
    differ = [k for k in a if not torch.equal(a[k], b[k])]
    assert not differ, f"{what}: {len(differ)} tensors differ, first {differ[:3]}"


def test_ranks_stay_identical_and_resume_from_rank_0(tmp_path):
    r0, r1 = run_ranks(tmp_path, "cpu")
    assert r0["backend"] == r1["backend"] == "gloo" and r0["device"] == "cpu" and r0["step"] == 5
    # every tensor of the model, the EMA and the optimizer state: identical on both ranks
    assert_same_state(r0["state"], r1["state"], "rank 0 vs rank 1")
    assert_same_state(r0["resumed"], r1["resumed"], "resumed: rank 0 vs rank 1")
    # rank 1 could not read the checkpoint (the worker forbids it), so it got it from rank 0; the resumed
    # run is the uninterrupted one, bit for bit
    assert_same_state(r0["resumed"], r0["state"], "resumed vs uninterrupted")
    # the ranks drew different batches (otherwise agreement would prove nothing) and training moved the weights
    assert not torch.equal(r0["rng"], r1["rng"])
    torch.manual_seed(0)  # the trainer's initial weights (seed 0)
    start = ConditionalUNet(TINY).state_dict()
    assert not torch.equal(start["conv_in.weight"], r0["state"]["model.conv_in.weight"])
    tensors, meta = load_checkpoint(tmp_path / "run" / "checkpoint.safetensors")
    assert meta["world_size"] == 2 and meta["step"] == 3 and meta["train"]["device"] == "cpu"
    assert not torch.equal(tensors["rng.0"], tensors["rng.1"])
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["checkpoint.safetensors"]
