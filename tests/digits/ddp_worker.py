"""One rank of the data-parallel check, run under torchrun by tests/digits/test_ddp.py (CPU, gloo) and by
tests/digits/test_gpu.py (CUDA, NCCL): `ddp_worker.py OUT DEVICE`.

Trains a tiny model 3 steps, saves (rank 0 writes), builds a second trainer that resumes from that file
(rank 0 alone may read it: the others get it broadcast) and trains both 2 more steps. Each rank then
writes OUT/rank{R}.pt with its full state (model, EMA, optimizer tensors), its resumed trainer's state
and the generator state, so the test can compare every tensor across ranks and against the resume.
"""

import sys
from pathlib import Path

import torch

from difflab.models.unet import UNetConfig
from difflab.training import train as T
from difflab.training.common import flatten_optimizer

TINY = UNetConfig(base_channels=16, channel_mults=(1, 2), num_res_blocks=1)


def full_state(tr: T.Trainer) -> dict[str, torch.Tensor]:
    state = {f"model.{k}": v for k, v in tr.model.state_dict().items()}
    state.update({f"ema.{k}": v for k, v in tr.ema.state_dict().items()})
    state.update(flatten_optimizer(tr.opt)[0])
    return {k: v.detach().cpu().clone() for k, v in state.items()}


def main(out: Path, device: str) -> None:
    g = torch.Generator().manual_seed(0)  # the same small data set on every rank
    data = (torch.randint(0, 256, (16, 3, 28, 28), generator=g, dtype=torch.uint8),
            torch.randint(0, 10, (16,), generator=g), torch.randint(0, 2, (16,), generator=g))
    cfg = T.TrainConfig(out_dir=str(out / "run"), steps=5, batch_size=4, unet=TINY, bf16=False, warmup_steps=1,
                        device=device)
    (out / "run").mkdir(parents=True, exist_ok=True)
    tr = T.Trainer(cfg, data=data)
    for _ in range(3):
        tr.train_step()
    tr.save()
    if tr.rank != 0:  # rank 0 alone reads the run folder; reading it here would be the bug under test
        def refuse(path):
            raise AssertionError(f"rank {tr.rank} read {path}")

        T.load_checkpoint = refuse
    resumed = T.Trainer(cfg, data=data)
    resumed.resume("latest")
    for _ in range(2):
        tr.train_step()
        resumed.train_step()
    tr._check_replicas_agree()
    resumed._check_replicas_agree()
    torch.save({"state": full_state(tr), "resumed": full_state(resumed), "rng": tr.gen.get_state(),
                "device": str(tr.device), "backend": torch.distributed.get_backend(), "step": resumed.step},
               out / f"rank{tr.rank}.pt")
    torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2])
