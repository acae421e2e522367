"""Benchmark difflab on each device in one run: `digits generate` (1000 images) and training throughput.

The CPU baseline is measured in the same run, limited to --cpu-threads (default 2: the 2-core machine the
issue compares against) and on fewer images (--cpu-images), so the ratio is per image. Every device's
generation uses the same model, settings and seed. Under torchrun the script times data-parallel
training only (every rank trains, rank 0 reports the global images per second):

    .venv/bin/python benchmarks/bench_device.py                        # CUDA (if any) vs the 2-thread CPU
    torchrun --nproc_per_node 2 benchmarks/bench_device.py --train-only --batch-size 256
    .venv/bin/python benchmarks/bench_device.py --summary              # the table of everything recorded

Results go to benchmarks/results/device.json: one entry per (what, device, processes), replaced when
measured again, each with the machine it ran on.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import _malloc  # benchmarks/_malloc.py: re-executes with the glibc allocator settings

_malloc.ensure()

import torch  # noqa: E402
from _record import write_record  # noqa: E402  (benchmarks/_record.py)

from difflab.device import autocast_dtype, cuda_count, dist_env, resolve_device, sync  # noqa: E402
from difflab.digits.generate import GenerateConfig, generate, resolve  # noqa: E402
from difflab.models.digits import SHIPPED, load_digit_model  # noqa: E402
from difflab.runtime import machine  # noqa: E402

# DIFFLAB_BENCH_RESULTS: another file (scripts/gpu_check.sh's dry run keeps the recorded numbers out of it)
RESULTS = Path(os.environ.get("DIFFLAB_BENCH_RESULTS", "benchmarks/results/device.json"))


def record(entry: dict) -> None:
    """Add or replace one measurement in RESULTS (keyed by what, device and processes)."""
    data = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {"entries": []}
    key = (entry["what"], entry["device"], entry["processes"])
    data["entries"] = [e for e in data["entries"] if (e["what"], e["device"], e["processes"]) != key] + [entry]
    write_record(RESULTS, data, say=False)


def time_generate(model_name: str, device: str, images: int) -> dict:
    """Seconds for `digits generate` of `images` images (20 per digit-domain pair each) on `device`."""
    model, schedule, _ = load_digit_model(model_name)
    cfg = resolve(GenerateConfig(per_digit=max(1, images // 20), model=model_name, device=device), model)
    with tempfile.TemporaryDirectory() as tmp:
        # warm-up: CUDA context, cuDNN algorithm choice, the allocator's first blocks
        generate(Path(tmp) / "warm", model, schedule, replace(cfg, per_digit=1), progress=False)
        sync(resolve_device(device))
        t0 = time.perf_counter()
        t = generate(Path(tmp) / "out", model, schedule, cfg, progress=False)
        sync(resolve_device(device))
        seconds = time.perf_counter() - t0
    return {"what": f"generate {model_name}", "images": t["images"], "seconds": seconds,
            "per_image_ms": 1000 * seconds / t["images"], "network_s": t["network_s"],
            "settings": f"{cfg.sampler} {cfg.steps} steps, guidance {cfg.guidance:g}, batch {cfg.batch_size}, "
                        f"{'bf16/fp16 autocast' if cfg.bf16 else 'fp32'}"}


def time_training(device: str, batch_size: int, steps: int) -> dict | None:
    """Images per second of `digits train` steps (the default UNet, global batch `batch_size`, random
    data: the speed does not depend on the pixels). Under torchrun: every rank trains, rank 0 reports."""
    import torch.distributed as dist

    from difflab.training.config import TrainConfig
    from difflab.training.train import Trainer

    rank, world, _, _ = dist_env()
    n = 4096
    g = torch.Generator().manual_seed(0)
    data = (torch.randint(0, 256, (n, 3, 28, 28), generator=g, dtype=torch.uint8),
            torch.randint(0, 10, (n,), generator=g), torch.randint(0, 2, (n,), generator=g))
    with tempfile.TemporaryDirectory() as tmp:
        tr = Trainer(TrainConfig(out_dir=tmp, steps=steps + 5, batch_size=batch_size, device=device), data=data)
        for _ in range(5):  # warm-up
            tr.train_step()
        sync(tr.device)
        if world > 1:
            dist.barrier()
        t0 = time.perf_counter()
        for _ in range(steps):
            tr.train_step()  # .item() of the loss syncs every step: what the real loop does too
        sync(tr.device)
        seconds = time.perf_counter() - t0
        dev = str(tr.device)
        if world > 1:
            dist.destroy_process_group()
    if rank != 0:
        return None
    return {"what": "train", "device": dev.split(":")[0], "processes": world, "batch_size": batch_size,
            "steps": steps, "seconds": seconds, "img_per_s": steps * batch_size / seconds,
            "autocast": str(autocast_dtype(dev)).replace("torch.", "")}


def summary() -> None:
    if not RESULTS.is_file():
        print(f"{RESULTS}: nothing recorded yet")
        return
    data = json.loads(RESULTS.read_text())
    print(f"{'what':<22} {'device':<8} {'procs':>5} {'result':>24}   machine")
    for e in data["entries"]:
        res = (f"{e['per_image_ms']:.2f} ms/image" if "per_image_ms" in e else f"{e['img_per_s']:.0f} img/s")
        m = e["machine"]
        print(f"{e['what']:<22} {e['device']:<8} {e['processes']:>5} {res:>24}   "
              f"{', '.join(m['gpus']) or m['cpu']} ({e.get('threads', m['cores'])} threads)")
    by = {(e["what"], e["device"], e["processes"]): e for e in data["entries"]}
    for what in sorted({e["what"] for e in data["entries"] if e["what"].startswith("generate")}):
        cpu, gpu = by.get((what, "cpu", 1)), by.get((what, "cuda", 1))
        if cpu and gpu:
            print(f"{what}: CUDA {cpu['per_image_ms'] / gpu['per_image_ms']:.1f}x faster per image than the "
                  f"{cpu['threads']}-thread CPU (target >= 10x)")
    one, two = by.get(("train", "cuda", 1)), by.get(("train", "cuda", 2))
    if one and two:
        print(f"train: 2 GPUs {two['img_per_s'] / one['img_per_s']:.2f}x the images/s of one "
              f"(batch {two['batch_size']} vs {one['batch_size']}; target >= 1.7x)")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=1000, help="images generated on CUDA")
    ap.add_argument("--cpu-images", type=int, default=200, help="images generated on the CPU baseline")
    ap.add_argument("--cpu-threads", type=int, default=2, help="threads of the CPU baseline")
    ap.add_argument("--model", default=None, help="teacher | student (default: student if shipped, else teacher)")
    ap.add_argument("--batch-size", type=int, default=128, help="global training batch")
    ap.add_argument("--train-steps", type=int, default=30)
    ap.add_argument("--cpu-train-steps", type=int, default=5)
    ap.add_argument("--train-only", action="store_true", help="training throughput only (what torchrun runs)")
    ap.add_argument("--summary", action="store_true", help="print what is recorded and exit")
    args = ap.parse_args()
    if args.summary:
        return summary()
    model = args.model or ("student" if SHIPPED["student"].is_file() else "teacher")
    info = machine()
    has_cuda = cuda_count() > 0
    if dist_env()[1] > 1 or args.train_only:
        r = time_training("auto", args.batch_size, args.train_steps)
        if r is not None:
            record({**r, "machine": info})
            print(f"train on {r['processes']} x {r['device']}: {r['img_per_s']:.0f} img/s (batch {r['batch_size']})")
        return
    runs = ([("cuda", args.images, None)] if has_cuda else []) + [("cpu", args.cpu_images, args.cpu_threads)]
    for device, images, threads in runs:
        if threads:
            torch.set_num_threads(threads)
        r = time_generate(model, device, images)
        record({**r, "device": device, "processes": 1, "threads": threads or torch.get_num_threads(),
                "machine": info})
        print(f"generate {model} on {device}: {r['images']} images in {r['seconds']:.1f} s "
              f"({r['per_image_ms']:.2f} ms/image; {r['settings']})", flush=True)
        steps = args.train_steps if device == "cuda" else args.cpu_train_steps
        t = time_training(device, args.batch_size, steps)
        record({**t, "threads": threads or torch.get_num_threads(), "machine": info})
        print(f"train on {device}: {t['img_per_s']:.0f} img/s (batch {args.batch_size}, {t['autocast']})", flush=True)
    summary()


if __name__ == "__main__":
    main()
