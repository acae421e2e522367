"""Textual-inversion cost on this CPU: seconds per training step and per generated image, peak memory.

Random weights only (no real SD weights here); timings do not depend on the weight values. Two model
sizes, both at 512 px images = 64x64 latents (SD v1's native size), plus the tiny model at 64 px (the
test setting):
  tiny  - the test pipeline of difflab.personalize.tiny (UNet 0.8M, VAE 1.0M, text encoder 1.6M parameters)
  sd15  - the exact SD-v1.5 architectures: UNet 860M, VAE 84M, CLIP ViT-L/14 text encoder 123M
Each (size, task) runs in its own process, so its peak RSS is its own. A training "step" here is one
micro-batch of 1 image (forward + backward through UNet and text encoder, AdamW on the embedding
matrix, frozen rows restored); the default recipe (batch 1 x grad-accum 4 x 3000 steps) is 12000 of
them. Image cost = text encoding + 50 DDIM steps (CFG: UNet on a batch of 2) + VAE decode; the SD-size
run times a few denoising steps and extrapolates to 50. GPU numbers are estimates from FLOPs counted
on the meta device (no GPU on this machine) and an assumed effective throughput, stated in the output.

    nice -n 19 env OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_ti.py [--runs ...] [--reuse JSON]
Timings are taken twice: wall seconds, and CPU seconds of the process (time.process_time). With one
thread the CPU seconds are what an idle core would take, so they stay meaningful when the benchmark
shares the cores with other jobs (under `nice -n 19` next to a busy job, wall time mostly measures
waiting); two threads on an idle 2-core machine would be up to 2x faster than the CPU seconds.
Writes benchmarks/results/ti.json and prints a table.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import _malloc  # benchmarks/_malloc.py: re-executes with the glibc allocator settings

_malloc.ensure()

import torch  # noqa: E402
from _record import write_record  # noqa: E402  (benchmarks/_record.py)

from difflab.runtime import finish_machine, machine  # noqa: E402

RUNS = {  # name: (size, image px, train steps timed, denoising steps timed, photos)
    "tiny@64px": ("tiny", 64, 20, 20, 3),
    "tiny@512px": ("tiny", 512, 10, 10, 3),
    "sd15@512px": ("sd15", 512, 2, 2, 1),
}
GPU_TFLOPS = (30.0, 100.0)  # assumed effective fp16 throughput range of one A100/H100-class GPU


def _peak_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


def worker(run: str, task: str) -> dict:
    import numpy as np
    from diffusers import DDIMScheduler

    from difflab.personalize.config import TrainConfig
    from difflab.personalize.tiny import build_pipeline
    from difflab.personalize.train import EmbeddingTrainer

    size, px, n_train, n_denoise, n_photos = RUNS[run]
    t0 = time.perf_counter()
    pipe = build_pipeline(size, seed=0)
    out = {"build_s": time.perf_counter() - t0}
    if task == "train":
        rng = np.random.default_rng(0)
        photos = [rng.integers(0, 256, (px, px, 3), dtype=np.uint8) for _ in range(n_photos)]
        cfg = TrainConfig(token="<new1>", init_word="dog", resolution=px, batch_size=1, grad_accum=1)
        t0, c0 = time.perf_counter(), time.process_time()
        tr = EmbeddingTrainer(pipe, photos, cfg)
        out["encode_per_photo_s"] = (time.perf_counter() - t0) / n_photos  # photo + its mirror, once
        out["encode_per_photo_cpu_s"] = (time.process_time() - c0) / n_photos
        tr.train_step()  # warm-up (allocator, lazy inits)
        times, cpu = [], []
        for _ in range(n_train):
            t0, c0 = time.perf_counter(), time.process_time()
            tr.train_step()
            times.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
        out.update(step_s=statistics.median(times), step_min_s=min(times), step_cpu_s=statistics.median(cpu),
                   steps_timed=n_train)
    else:
        pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
        pipe.set_progress_bar_config(disable=True)
        with torch.no_grad():
            t0, c0 = time.perf_counter(), time.process_time()
            pipe.encode_prompt("a photo of a dog", "cpu", 1, True)
            out["text_s"], out["text_cpu_s"] = time.perf_counter() - t0, time.process_time() - c0
            stamps, cpu = [], []

            def on_step(p, i, t, kw):
                stamps.append(time.perf_counter())
                cpu.append(time.process_time())
                return kw

            t0 = time.perf_counter()
            lat = pipe("a photo of a dog", num_inference_steps=n_denoise + 1, height=px, width=px,
                       guidance_scale=7.5, output_type="latent", callback_on_step_end=on_step,
                       generator=torch.Generator().manual_seed(0)).images
            steps = [b - a for a, b in zip(stamps, stamps[1:])]  # drops the first (warm-up) step
            cpu_steps = [b - a for a, b in zip(cpu, cpu[1:])]
            t0, c0 = time.perf_counter(), time.process_time()
            pipe.vae.decode(lat / pipe.vae.config.scaling_factor)
            out["decode_s"], out["decode_cpu_s"] = time.perf_counter() - t0, time.process_time() - c0
        out.update(unet_step_s=statistics.median(steps), unet_step_cpu_s=statistics.median(cpu_steps),
                   steps_timed=len(steps))
        out["image_50_steps_s"] = out["text_s"] + 50 * out["unet_step_s"] + out["decode_s"]
        out["image_50_steps_cpu_s"] = out["text_cpu_s"] + 50 * out["unet_step_cpu_s"] + out["decode_cpu_s"]
    out["peak_rss_gib"] = _peak_gib()
    return out


def count_tflops() -> dict:
    """FLOPs of SD-v1.5-sized components at 64x64 latents, counted on the meta device (no compute)."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from torch.utils.flop_counter import FlopCounterMode
    from transformers import CLIPTextConfig, CLIPTextModel

    from difflab.personalize.tiny import TEXT, UNET, VAE

    with torch.device("meta"):
        unet = UNet2DConditionModel(in_channels=4, out_channels=4, **UNET["sd15"])
        te = CLIPTextModel(CLIPTextConfig(**TEXT["sd15"], vocab_size=49408, max_position_embeddings=77))
        vae = AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4, **VAE["sd15"],
                            down_block_types=("DownEncoderBlock2D",) * 4,
                            up_block_types=("UpDecoderBlock2D",) * 4)
        x, t = torch.randn(2, 4, 64, 64), torch.tensor([500, 500])
        ids = torch.zeros(1, 77, dtype=torch.long)
    out = {}
    with FlopCounterMode(display=False) as fc:
        unet(x, t, torch.randn(2, 77, 768, device="meta"))
    out["unet_cfg_step"] = fc.get_total_flops() / 1e12
    with FlopCounterMode(display=False) as fc:
        unet(x[:1], t[:1], te(ids)[0]).sample.sum().backward()
    out["train_micro_batch"] = fc.get_total_flops() / 1e12
    with FlopCounterMode(display=False) as fc:
        vae.decode(torch.randn(1, 4, 64, 64, device="meta"))
    out["vae_decode"] = fc.get_total_flops() / 1e12
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", nargs="+", default=list(RUNS), choices=list(RUNS))
    ap.add_argument("--note", default="2-core CPU shared with a background training job")
    ap.add_argument("--out", default="benchmarks/results/ti.json")
    ap.add_argument("--reuse", default=None, metavar="JSON",
                    help="keep the results of runs not measured now from an earlier results file")
    ap.add_argument("--worker", nargs=2, metavar=("RUN", "TASK"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(worker(*args.worker)))
        return
    info = machine()
    results = json.loads(Path(args.reuse).read_text())["results"] if args.reuse else {}
    for run in args.runs:
        for task in ("train", "generate"):
            proc = subprocess.run([sys.executable, __file__, "--worker", run, task], capture_output=True,
                                  text=True, check=True)
            results[f"{run}/{task}"] = json.loads(proc.stdout.strip().splitlines()[-1])
            print(f"{run:>11} {task:>8}: {results[f'{run}/{task}']}", flush=True)
    flops = count_tflops()
    est = estimates(results, flops)
    finish_machine(info)
    print(f"\n{'run':>11} | {'CPU s/train step':>16} | {'CPU s/UNet step':>15} | {'CPU s/image':>11} | "
          f"{'wall s/train, /image':>20} | {'peak GiB train/gen':>18}")
    for run in RUNS:
        tr, ge = results.get(f"{run}/train"), results.get(f"{run}/generate")
        if tr and ge:
            print(f"{run:>11} | {tr['step_cpu_s']:16.3f} | {ge['unet_step_cpu_s']:15.3f} | "
                  f"{ge.get('image_50_steps_cpu_s', float('nan')):11.2f} | "
                  f"{tr['step_s']:9.2f}, {ge['image_50_steps_s']:8.1f} | "
                  f"{tr['peak_rss_gib']:8.2f} / {ge['peak_rss_gib']:.2f}")
    print(f"\nSD-v1.5 FLOPs (TFLOP): {flops}")
    print(f"estimates: {json.dumps(est, indent=1)}")
    write_record(args.out, {"machine": info, "note": args.note, "results": results, "tflop": flops,
                            "estimates": est})


def estimates(results: dict, flops: dict) -> dict:
    """Full-run estimates: CPU from the SD-size CPU seconds (1 thread), GPU from FLOPs / throughput."""
    micro, image = 12000, 50 * flops["unet_cfg_step"] + flops["vae_decode"]
    est = {"train_3000x4_tflop": micro * flops["train_micro_batch"], "image_50_steps_tflop": image,
           "assumed_gpu_tflops": GPU_TFLOPS}
    for name, tf in (("train_3000x4", est["train_3000x4_tflop"]), ("100_images", 100 * image)):
        est[f"{name}_gpu_minutes"] = [round(tf / g / 60, 1) for g in GPU_TFLOPS[::-1]]
    sd_train, sd_gen = results.get("sd15@512px/train"), results.get("sd15@512px/generate")
    if sd_train and sd_gen and "image_50_steps_cpu_s" in sd_gen:
        est["train_3000x4_cpu_core_hours"] = micro * sd_train["step_cpu_s"] / 3600
        est["100_images_cpu_core_hours"] = 100 * sd_gen["image_50_steps_cpu_s"] / 3600
        est["cpu_gflops_per_core_train"] = 1000 * flops["train_micro_batch"] / sd_train["step_cpu_s"]
        est["cpu_gflops_per_core_unet"] = 1000 * flops["unet_cfg_step"] / sd_gen["unet_step_cpu_s"]
        est["cpu_gflops_per_core_decode"] = 1000 * flops["vae_decode"] / sd_gen["decode_cpu_s"]
    return est


if __name__ == "__main__":
    main()
