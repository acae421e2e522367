"""DDIM: parity with diffusers, sampler overhead, and the inversion round trip on our digit model.

1. parity: our DDIMSampler vs diffusers' DDIMScheduler, full 50-step runs in float32 on the digit model
   (CFG, guidance 3), batch 10, same x_T and (eta > 0) the same variance noise; max |difference|.
2. overhead: wall time of a 50-step run / time of the same 50 UNet forward passes alone, batch 10, a
   randomly initialised default ConditionalUNet() (the cost of the trained one) under inference_mode;
   diffusers' DDIMScheduler loop on the same model in the same rounds; rounds interleaved, medians.
   Also the scheduler alone (eps from a lookup instead of a network), in microseconds per step.
3. inversion: images sampled from the digit model (50 steps, saved to uint8 like PNGs), inverted at 50
   steps with their own labels (guidance 1 and 3), re-sampled; reconstruction MSE on the 0-1 scale, for
   the classic step (diffusers' DDIMInverseScheduler), the older eps-at-t_prev variant, and 1-3
   fixed-point iterations per step (DDIMSampler.invert's default is 1), with network calls per run.

    nice -n 19 env OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_ddim.py [--digits-model PATH]
Writes benchmarks/results/ddim.json and prints tables. Without trained weights (the shipped file or
--digits-model), parity and inversion use a random model with its zero-initialised layers randomised.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import _malloc  # benchmarks/_malloc.py: re-executes with the glibc allocator settings

_malloc.ensure()

import torch  # noqa: E402
from _record import write_record  # noqa: E402  (benchmarks/_record.py)

from difflab.diffusion.sampling import DDIMSampler, cfg_eps_fn  # noqa: E402
from difflab.diffusion.schedule import NoiseSchedule  # noqa: E402
from difflab.io import to_uint8  # noqa: E402
from difflab.models.digits import DEFAULT_MODEL, load_digit_model  # noqa: E402
from difflab.models.unet import ConditionalUNet  # noqa: E402
from difflab.runtime import finish_machine, machine  # noqa: E402


def digit_model(path):
    """(model, description): trained weights if there are any, else a random model that is not trivial."""
    path = Path(path) if path else DEFAULT_MODEL
    if path.is_file():
        return load_digit_model(path)[0], f"trained: {path}"
    torch.manual_seed(0)
    model = ConditionalUNet().eval()
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():  # zero-initialised output layers would make eps == 0 and parity trivial
        for p in model.parameters():
            if p.ndim > 1 and not p.any():
                p.copy_(torch.randn(p.shape, generator=g) * 0.05)
    return model, "random ConditionalUNet() (no trained weights found)"


def labels(n):
    return torch.arange(n) % 10, torch.zeros(n, dtype=torch.long)


def parity(model, batch, steps):
    from diffusers import DDIMScheduler

    digits, domains = labels(batch)
    eps_fn = cfg_eps_fn(model, digits, domains, 3.0)
    g = torch.Generator().manual_seed(0)
    x_T = torch.randn(batch, 3, 28, 28, generator=g)
    noises = [torch.randn(batch, 3, 28, 28, generator=g) for _ in range(steps)]
    # (spacing, eta, clip_x0, final_alpha_one, offset); tests/ddim/test_parity.py covers every combination
    # on a tiny model, this is the full-size check on the digit model
    cases = [("leading", 0.0, None, True, 0), ("leading", 1.0, None, True, 0),
             ("trailing", 0.5, 1.0, True, 0), ("linspace", 0.0, None, False, 0),
             ("leading", 0.0, 1.0, False, 1)]
    rows = []
    for spacing, eta, clip, alpha_one, offset in cases:
        ours = DDIMSampler(NoiseSchedule(), steps, spacing, offset, eta, clip, alpha_one)
        ref = DDIMScheduler(clip_sample=clip is not None, set_alpha_to_one=alpha_one, steps_offset=offset,
                            timestep_spacing=spacing)
        ref.set_timesteps(steps)
        with torch.inference_mode():
            got = ours.sample(eps_fn, x_T, variance_noise=noises if eta > 0 else None)
            x = x_T
            for i, t in enumerate(ref.timesteps):
                x = ref.step(eps_fn(x, int(t)), t, x, eta=eta, variance_noise=noises[i] if eta > 0 else None
                             ).prev_sample
        diff = float((got - x).abs().max())
        rows.append({"spacing": spacing, "offset": offset, "eta": eta, "clip_x0": clip,
                     "final_alpha_one": alpha_one, "max_abs_diff": diff, "bound": 1e-6 if eta == 0 else 1e-4,
                     "sample_abs_max": float(x.abs().max())})
        print(f"  parity {spacing:<8} offset {offset} eta {eta:<4} clip {clip!s:<4} "
              f"alpha_one {alpha_one!s:<5} max|diff| = {diff:.3g}")
    return rows


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def overhead(batch, steps, rounds):
    from diffusers import DDIMScheduler

    torch.manual_seed(0)
    model = ConditionalUNet().eval()  # random init: same cost as the trained one
    digits, domains = labels(batch)

    net_s = [0.0]  # time inside the network during the current run

    def eps_fn(x, t):
        t0 = time.perf_counter()
        out = model(x, torch.full((batch,), t, dtype=torch.long), digits, domains)
        net_s[0] += time.perf_counter() - t0
        return out

    x_T = torch.randn(batch, 3, 28, 28, generator=torch.Generator().manual_seed(1))
    ours = {eta: DDIMSampler(NoiseSchedule(), steps, eta=eta) for eta in (0.0, 1.0)}
    ref = DDIMScheduler(clip_sample=False)
    ref.set_timesteps(steps)
    ts = ours[0.0].timesteps.tolist()

    def forwards():
        for t in ts:
            eps_fn(x_T, t)

    def diffusers_loop(eta, f=eps_fn):
        x, g = x_T, torch.Generator().manual_seed(2)
        for t in ref.timesteps:
            x = ref.step(f(x, int(t)), t, x, eta=eta, generator=g if eta > 0 else None).prev_sample

    def ours_loop(eta, f=eps_fn):
        ours[eta].sample(f, x_T, torch.Generator().manual_seed(2))

    runs = {"forwards": forwards, "ours_eta0": lambda: ours_loop(0.0), "ours_eta1": lambda: ours_loop(1.0),
            "diffusers_eta0": lambda: diffusers_loop(0.0), "diffusers_eta1": lambda: diffusers_loop(1.0)}
    with torch.inference_mode():
        forwards()  # warm-up
        times, inner = _rounds(runs, rounds, net_s)
        # the scheduler alone: eps from a table, so only the update maths and loop remain
        table = {t: torch.randn(batch, 3, 28, 28) for t in ts}

        def lookup(x, t):
            return table[t]

        alone = {}
        for name, fn in (("ours_eta0", lambda: ours_loop(0.0, lookup)),
                         ("ours_eta1", lambda: ours_loop(1.0, lookup)),
                         ("diffusers_eta0", lambda: diffusers_loop(0.0, lookup)),
                         ("diffusers_eta1", lambda: diffusers_loop(1.0, lookup))):
            fn()
            alone[name] = min(timed(fn) for _ in range(30)) / steps * 1e6
    return {"batch": batch, "steps": steps, "rounds": rounds, **_ratios(times, inner),
            "scheduler_only_us_per_step": alone}


def _rounds(runs: dict, rounds: int, net_s: list) -> tuple[dict, dict]:
    """Every run once a round: wall seconds, and wall / network seconds (net_s[0], which the runs' eps_fn
    adds to) within the same run: robust to background load."""
    times = {k: [] for k in runs}
    inner = {k: [] for k in runs}
    for r in range(rounds):
        names = list(runs)
        for k in names[r % len(names):] + names[:r % len(names)]:  # rotate to spread drifts evenly
            net_s[0] = 0.0
            times[k].append(timed(runs[k]))
            inner[k].append(times[k][-1] / net_s[0])
        print(f"  round {r + 1}/{rounds}: " + ", ".join(f"{k} {v[-1]:.2f}s" for k, v in times.items()))
    return times, inner


def _ratios(times: dict, inner: dict) -> dict:
    med = {k: statistics.median(v) for k, v in times.items()}
    ratio = {k: statistics.median([a / f for a, f in zip(v, times["forwards"])]) for k, v in times.items()
             if k != "forwards"}
    # other work on the machine only ever adds time: the fastest round of each is the least disturbed
    ratio_min = {k: min(v) / min(times["forwards"]) for k, v in times.items() if k != "forwards"}
    return {"times_s": times, "median_s": med, "ratio_to_forwards_median": ratio, "ratio_of_fastest_runs": ratio_min,
            "ratio_wall_to_network_in_run_median": {k: statistics.median(v) for k, v in inner.items()}}


def inversion(model, n, steps, guidance):
    digits, domains = labels(n)
    eps_fn = cfg_eps_fn(model, digits, domains, guidance)
    calls = [0]

    def counted(x, t):
        calls[0] += 1
        return eps_fn(x, t)

    s = DDIMSampler(NoiseSchedule(), steps)
    variants = [("classic, eps(x_prev, t) (fixed_point_iters=0, = diffusers DDIMInverseScheduler)",
                 lambda y: s.invert(counted, y, fixed_point_iters=0)),
                ("older variant, eps(x_prev, t_prev)", lambda y: invert_at_current(s, counted, y))]
    variants += [(f"fixed-point, {k} iteration(s) per step",
                  lambda y, k=k: s.invert(counted, y, fixed_point_iters=k)) for k in (1, 2, 3)]
    with torch.inference_mode():
        x = s.sample(eps_fn, torch.randn(n, 3, 28, 28, generator=torch.Generator().manual_seed(3)))
        x0 = torch.from_numpy(to_uint8(x)).permute(0, 3, 1, 2).float() / 127.5 - 1  # as read from PNG
        out = {}
        for name, inv in variants:
            calls[0] = 0
            z = inv(x0)
            recon = ((s.sample(eps_fn, z) + 1) / 2).clamp(0, 1)
            out[name] = {"mse_0_1": float((recon - (x0 + 1) / 2).pow(2).mean()), "noise_std": float(z.std()),
                         "network_calls": calls[0]}
            print(f"  inversion guidance {guidance:g}, {name}: MSE(0-1) = {out[name]['mse_0_1']:.3e}, "
                  f"noise std {out[name]['noise_std']:.3f}, {calls[0]} network calls")
    return out


def invert_at_current(s: DDIMSampler, eps_fn, x):
    """The variant this project started with: eps at the current, lower timestep t - T//S."""
    for t in s.timesteps.flip(0).tolist():
        t_prev = s.prev_timestep(t)
        a_t, a_prev = s._alpha(t), s._alpha(t_prev)
        eps = eps_fn(x, max(t_prev, 0))
        x = a_t**0.5 * (x - (1 - a_prev) ** 0.5 * eps) / a_prev**0.5 + (1 - a_t) ** 0.5 * eps
    return x


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--digits-model", default=None, help="trained digit weights (default: the shipped file)")
    ap.add_argument("--batch", type=int, default=10)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--invert-images", type=int, default=20)
    ap.add_argument("--skip", default="", help="comma list of parts to skip: parity,overhead,inversion")
    ap.add_argument("--note", default="", help="what else ran on the machine (recorded in the JSON)")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "ddim.json"))
    args = ap.parse_args()
    # one machine() per part: the load averages around each (above the core count = other work competed)
    m = machine(note=args.note)
    model, desc = digit_model(args.digits_model)
    print(f"digit model: {desc}; torch threads {torch.get_num_threads()}")
    result = {"benchmark": "ddim", "digit_model": desc}
    skip = set(filter(None, args.skip.split(",")))
    if "parity" not in skip:
        cases = parity(model, args.batch, args.steps)
        result["parity"] = {"cases": cases, "machine": finish_machine(m)}
        m = machine(note=args.note)
    if "overhead" not in skip:
        result["overhead"] = o = overhead(args.batch, args.steps, args.rounds)
        o["machine"] = finish_machine(m)
        m = machine(note=args.note)
        head = f"loop (batch {args.batch}, {args.steps} steps)"
        print(f"\n{head:<26}{'median s':>9}{'/fwd (med)':>11}{'/fwd (min)':>11}{'wall/net in run':>16}"
              f"{'sched-only us/step':>20}")
        for k, v in o["median_s"].items():
            r, rm = o["ratio_to_forwards_median"].get(k), o["ratio_of_fastest_runs"].get(k)
            inner = o["ratio_wall_to_network_in_run_median"][k]
            us = o["scheduler_only_us_per_step"].get(k)
            print(f"{k:<26}{v:>9.3f}{(f'{r:.4f}' if r else '-'):>11}{(f'{rm:.4f}' if rm else '-'):>11}"
                  f"{inner:>16.4f}{(f'{us:.1f}' if us else '-'):>20}")
    if "inversion" not in skip:
        result["inversion"] = {f"guidance_{w:g}": inversion(model, args.invert_images, args.steps, w)
                               for w in (1.0, 3.0)}
        result["inversion"]["machine"] = finish_machine(m)
    out = Path(args.out)
    if out.is_file() and skip:  # a partial run updates its parts and keeps the others
        result = {**json.loads(out.read_text()), **result}
    print(f"\nmachine: {finish_machine(m)}")
    write_record(out, result)


if __name__ == "__main__":
    main()
