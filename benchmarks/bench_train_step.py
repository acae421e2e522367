"""Cost of one training step of the digit UNet for several network shapes (issue 11: cheaper steps).

Each shape: a fresh network, AdamW, bf16 autocast on the CPU, a batch of random images and labels (the
speed does not depend on the pixels); forward, epsilon-style MSE, backward, optimizer step, timed with
perf_counter. Median of the steps after the warm-up ones. Prints a table, writes JSON.

    .venv/bin/python benchmarks/bench_train_step.py [--batch-size 64] [--steps 12] [--warmup 3] [--channels-last]

--channels-last stores the weights and the batch as NHWC (torch.channels_last), which PyTorch's CPU
performance guide recommends for convolution networks (fewer layout reorders around oneDNN's kernels):
measured here, not assumed (docs/RESULTS.md §9: slower for every shape on this VM).
"""

from __future__ import annotations

import argparse
import statistics
import time

import _malloc  # benchmarks/_malloc.py: re-executes with the glibc allocator settings

_malloc.ensure()

import torch  # noqa: E402
from _record import write_record  # noqa: E402  (benchmarks/_record.py)

from difflab.device import autocast  # noqa: E402
from difflab.models.unet import ConditionalUNet, UNetConfig  # noqa: E402
from difflab.runtime import finish_machine, machine  # noqa: E402

SHAPES = {
    "1 block, 32-64-128 (release recipe)": dict(num_res_blocks=1),
    "1 block, 32-64-64": dict(num_res_blocks=1, channel_mults=(1, 2, 2)),
    "1 block, 24-48-96": dict(num_res_blocks=1, base_channels=24),
    "1 block, 48-96-192": dict(num_res_blocks=1, base_channels=48),
    "2 blocks, 32-64-128 (the shipped teacher)": dict(num_res_blocks=2),
}


def step_seconds(cfg: UNetConfig, batch: int, steps: int, warmup: int,
                 channels_last: bool = False) -> tuple[float, int]:
    """(median seconds per training step after `warmup` steps, parameter count)."""
    g = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    model = ConditionalUNet(cfg)
    x = torch.randn(batch, 3, 28, 28, generator=g)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    t, digits, domains = (torch.randint(0, n, (batch,), generator=g) for n in (1000, 10, 2))
    times = []
    for _ in range(warmup + steps):
        start = time.perf_counter()
        with autocast(torch.device("cpu"), True):
            out = model(x, t, digits, domains)
        loss = (out.float() - x).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - start)
    return statistics.median(times[warmup:]), sum(p.numel() for p in model.parameters())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--steps", type=int, default=12, help="timed steps per shape")
    ap.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    ap.add_argument("--channels-last", action="store_true", help="NHWC weights and batch")
    ap.add_argument("--out", default="benchmarks/results/train_step.json")
    args = ap.parse_args()
    torch.set_num_threads(2)
    info = machine()
    rows = []
    print(f"{'network':<44} {'ms/step':>8} {'parameters':>11}")
    for name, kw in SHAPES.items():
        s, params = step_seconds(UNetConfig(**kw), args.batch_size, args.steps, args.warmup, args.channels_last)
        rows.append({"network": name, "unet": kw, "s_per_step": s, "parameters": params})
        print(f"{name:<44} {s * 1000:8.1f} {params / 1e6:10.2f}M", flush=True)
    write_record(args.out, {"machine": finish_machine(info), "batch_size": args.batch_size, "steps": args.steps,
                            "warmup": args.warmup, "channels_last": args.channels_last, "rows": rows})


if __name__ == "__main__":
    main()
