"""Generate digits in the standard layout: OUT/{mnistm,svhn}/{digit}_{NNN}.png + a 10x10 grid per domain.

Determinism: all starting noise x_T is drawn up front, in layout order (domain, digit, index), from one
generator seeded with `seed`; the images are then denoised in fixed chunks of `batch_size`, each with
its own generator for any per-step noise (DDPM / eta > 0). So an image depends only on the seed and the
settings, and `chunk_for(...)` lets other tools (the reverse-process figure) replay one exactly.

Devices (`--device`, difflab.device): the generators are CPU generators and their draws are moved to the
device, so the starting noise is the same on every device; the network then runs there (bf16 autocast
on the CPU, bf16 or fp16 on CUDA by what the card supports). Same seed -> same images on the same device.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, replace

import numpy as np
import torch
from tqdm import tqdm

from difflab.checks import check_count, check_eta, check_guidance, check_seed
from difflab.data import DOMAINS
from difflab.device import autocast, check_device, cpu_generator, move, randn, resolve_device, stream_generator, sync
from difflab.diffusion.sampling import DDIMSampler, DDPMSampler, cfg_eps_fn
from difflab.diffusion.solvers import MULTISTEP_SOLVERS, SAMPLERS
from difflab.diffusion.solvers import make_sampler as make_solver
from difflab.errors import DifflabError
from difflab.io import save_png, staged_output_dir, to_uint8
from difflab.models.state import unwrap
from difflab.viz import grid, save_image

TEACHER_STEPS = 20  # the teacher's default DDIM (and DDPM) steps (its quality plateau, docs/RESULTS.md)
# The high-order solvers' default: on the teacher at w 3, DPM-Solver++(2M) at 10 steps beats its own 20 on accuracy
# and Fréchet in both domains over five seeds (UniPC alike over two), at half the passes (docs/RESULTS.md §1)
SOLVER_STEPS = 10
GENERATE_SAMPLERS = SAMPLERS  # generate offers every sampler the solvers module makes


@dataclass
class GenerateConfig:
    per_digit: int = 50
    # "teacher" (CFG: two passes per step, DDIM 20), "student" (distilled: 4 steps, one pass each, ~10x faster;
    # over 5 seeds at the teacher's accuracy: docs/RESULTS.md §7) or a .safetensors path. None: the student,
    # but the teacher when concepts are drawn (styles learned on the teacher came out with 3-4x lower Fréchet
    # distances there than on the student: docs/RESULTS.md §8); `model_name()` says which
    model: str | None = None
    guidance: float = 3.0  # best accuracy and Fréchet distance of the release model (docs/RESULTS.md)
    # None: the model's own default (student: its distilled steps; teacher: 20 with ddim and ddpm, 10 with the
    # solvers dpmpp-2m and unipc, `default_steps`)
    steps: int | None = None
    sampler: str | None = None  # ddim | ddpm | dpmpp-2m | unipc; None: ddim (a student takes ddim only)
    eta: float = 0.0
    seed: int = 0
    batch_size: int = 250
    bf16: bool = True  # network in bf16 autocast (~2.5x faster on CPU); sampler maths stays float32
    # "digit": uncond = (null digit, same domain); "both": null digit and null domain. None: "both" for a
    # teacher drawing a LoRA style concept (it pulls the new style harder: Fréchet 29-40 % lower at the same
    # or better accuracy; mixed for ti and finetune styles, worse for a symbol: docs/RESULTS.md §8), else
    # "digit"
    guide: str | None = None
    guidance_interval: tuple[int, int] | None = None  # teacher: guide only for LO <= t <= HI
    karras: bool = False  # Karras sigmas for dpmpp-2m
    device: str = "auto"  # auto | cpu | cuda | cuda:N (difflab.device.resolve_device)
    # concept folders from `digits personalize` (at most one style and one symbol): with any, only the
    # concepts' images are written (see `layout`)
    concepts: tuple[str, ...] = ()

    def __post_init__(self):
        """Checked when built, so the CLI, the API and the report share one check."""
        if isinstance(self.concepts, (list, tuple)) and all(isinstance(c, (str, os.PathLike)) for c in self.concepts):
            self.concepts = tuple(str(c) for c in self.concepts)  # a list or Paths from the API: one form
        self.check()

    def model_name(self) -> str:
        """The model to load: `model`, or its default (the student; the teacher when concepts are drawn)."""
        if self.model is not None:
            return self.model
        return "teacher" if self.concepts else "student"

    def check(self) -> None:
        check_count("per_digit", self.per_digit)
        check_guidance("guidance", self.guidance)
        if self.steps is not None:
            check_count("steps", self.steps)
        if self.sampler is not None and self.sampler not in GENERATE_SAMPLERS:
            raise DifflabError(f"unknown sampler {self.sampler!r} (choose from {', '.join(GENERATE_SAMPLERS)})")
        check_eta("eta", self.eta)
        if self.eta > 0 and (self.sampler or "ddim") != "ddim":
            raise DifflabError(f"--eta applies to the ddim sampler only, not {self.sampler}")
        check_seed("seed", self.seed)
        check_count("batch_size", self.batch_size)
        if self.guide not in (None, "digit", "both"):
            raise DifflabError(f"unknown guidance target {self.guide!r} (digit or both)")
        check_device(self.device)
        if isinstance(self.concepts, (str, bytes)) or not all(isinstance(c, str) for c in self.concepts):
            raise DifflabError(f"--concept: expected a list of concept folders, got {self.concepts!r}")
        if len(set(self.concepts)) != len(self.concepts):
            raise DifflabError("--concept: the same concept folder is given twice")


def student_info(model) -> dict | None:
    """What a guidance-input student was distilled for ({steps, spacing, guidance_range, guide}), or None
    for a teacher. load_digit_model attaches it from the checkpoint's metadata."""
    model = unwrap(model)  # TimedModel and friends
    if not getattr(getattr(model, "config", None), "guidance_input", False):
        return None
    return getattr(model, "student", None) or {"steps": 4, "spacing": "trailing", "guidance_range": [1.0, 5.0],
                                               "guide": "digit"}


def draws_a_lora_style(cfg: GenerateConfig) -> bool:
    """Whether the images are drawn in a style learned with LoRA (a concept of kind 'domain', method 'lora'):
    the concepts for which guiding digit and domain measured better (docs/RESULTS.md §8)."""
    from difflab.concepts.concept import concept_meta

    return any((m := concept_meta(c))["kind"] == "domain" and m["method"] == "lora" for c in cfg.concepts)


def default_steps(sampler: str | None) -> int:
    """The teacher's step count when --steps is not given: SOLVER_STEPS for dpmpp-2m and unipc, else TEACHER_STEPS."""
    return SOLVER_STEPS if sampler in MULTISTEP_SOLVERS else TEACHER_STEPS


def resolve(cfg: GenerateConfig, model) -> GenerateConfig:
    """Fill the model-dependent defaults (steps, sampler, guide) and refuse what the model cannot do."""
    cfg.check()
    info = student_info(model)
    if info is None:
        guide = cfg.guide or ("both" if draws_a_lora_style(cfg) else "digit")
        sampler = cfg.sampler or "ddim"
        return replace(cfg, steps=cfg.steps or default_steps(sampler), sampler=sampler, guide=guide)
    cfg = replace(cfg, guide=cfg.guide or info["guide"])  # a student guides the way it was distilled
    steps, sampler = cfg.steps or info["steps"], cfg.sampler or "ddim"
    if steps != info["steps"]:
        raise DifflabError(f"the student supports --steps {info['steps']} only (it was distilled for that grid), "
                           f"got {steps}; use --model teacher for other step counts")
    if sampler != "ddim" or cfg.eta:
        raise DifflabError("the student runs the deterministic DDIM it was distilled for: --sampler ddim, --eta 0")
    lo, hi = info["guidance_range"]
    if not lo <= cfg.guidance <= hi:
        raise DifflabError(f"the student was distilled for guidance in [{lo:g}, {hi:g}], got {cfg.guidance:g}")
    if cfg.guidance_interval is not None:
        raise DifflabError("--guidance-interval applies to the teacher; the student takes the guidance as input")
    if cfg.guide != info["guide"]:
        raise DifflabError(f"the student was distilled with --guide {info['guide']}, not {cfg.guide}")
    return replace(cfg, steps=steps, sampler=sampler)


def concept_rows(model) -> dict[str, dict[str, int]]:
    """{"domain": {style: index}, "digit": {symbol: index}} of a model with concepts applied
    (concepts/concept.py apply_concepts); empty dicts for a plain model."""
    return getattr(unwrap(model), "concept_rows", None) or {"domain": {}, "digit": {}}


def layout(cfg: GenerateConfig, domains=DOMAINS, rows: dict | None = None) -> list[tuple[str, int | str, int]]:
    """Every image as (domain, digit, k) with k from 1, in generation order; also its file name:
    OUT/{domain}/{digit}_{k:03d}.png. `rows` (`concept_rows`) swaps in the concepts: a style replaces the
    domains (all ten digits in it), a symbol replaces the digits (in each domain), both: the symbol in
    the style. The labels are names; `label_indices` turns them into the model's table rows."""
    styles, symbols = list((rows or {}).get("domain", {})), list((rows or {}).get("digit", {}))
    return [(m, d, k) for m in (styles or domains) for d in (symbols or range(10))
            for k in range(1, cfg.per_digit + 1)]


def label_indices(chunk, rows: dict | None, device) -> tuple[torch.Tensor, torch.Tensor]:
    """(digits (B,) long, domains (B,) long) table rows of layout items: shipped names by their position,
    concept names by `rows`."""
    rows = rows or {"domain": {}, "digit": {}}
    digits = [d if isinstance(d, int) else rows["digit"][d] for _, d, _ in chunk]
    doms = [DOMAINS.index(m) if m in DOMAINS else rows["domain"][m] for m, _, _ in chunk]
    return torch.tensor(digits, device=device), torch.tensor(doms, device=device)


def with_concepts(model, cfg: GenerateConfig):
    """`model` with `cfg.concepts` applied (a copy; the model is unchanged), or the model itself when it has
    none or already carries exactly those (concepts/concept.py load_with_concepts)."""
    if not cfg.concepts:
        return model
    have = getattr(unwrap(model), "concept_dirs", None)
    if have is None:
        from difflab.concepts.concept import apply_concepts, load_concepts

        return apply_concepts(model, load_concepts(cfg.concepts))
    from difflab.concepts.concept import concept_key

    if tuple(have) != concept_key(cfg.concepts):
        raise DifflabError(f"--concept {', '.join(cfg.concepts)}: the model carries other concepts "
                           f"({', '.join(have)}); pass the base model")
    return model


def make_sampler(cfg: GenerateConfig, schedule, model=None):
    """The sampler `cfg` names for `model` (a student always gets the DDIM grid it was distilled for)."""
    info = student_info(model)
    if info is not None:
        return DDIMSampler(schedule, steps=cfg.steps, spacing=info["spacing"], clip_x0=None)
    steps = cfg.steps or default_steps(cfg.sampler)
    if cfg.sampler == "ddpm":
        return DDPMSampler(schedule, steps=steps)
    if cfg.sampler in (None, "ddim"):
        return DDIMSampler(schedule, steps=steps, eta=cfg.eta, clip_x0=1.0)
    return make_solver(cfg.sampler, schedule, steps, karras=cfg.karras, clip_x0=1.0)


def make_eps_fn(model, cfg: GenerateConfig, digits: torch.Tensor, domains: torch.Tensor, schedule=None):
    """eps_fn(x_t, t) for one chunk: the student in one pass with w as input, the teacher through CFG.

    A student's output means x0 at its `x0_steps` (where eps is ill-conditioned, see training/distill.py);
    it is turned into the eps the DDIM step expects, in float32."""
    info = student_info(model)
    if info is not None:
        from difflab.training.jumps import student_output_to_eps

        w = torch.full((len(digits),), float(cfg.guidance), device=digits.device)
        x0_steps = info.get("x0_steps", [])

        def student_eps(x, t):
            out = model(x, torch.full((len(digits),), t, dtype=torch.long, device=x.device), digits, domains, w)
            return student_output_to_eps(out, x, t, schedule, x0_steps)

        return student_eps
    if cfg.guide is None:  # its default depends on the concepts: only resolve() knows it
        raise ValueError("make_eps_fn needs a resolved GenerateConfig (resolve(cfg, model))")
    interval = {} if cfg.guidance_interval is None else {"guidance_interval": cfg.guidance_interval}
    return cfg_eps_fn(model, digits, domains, cfg.guidance, null_domain=None if cfg.guide == "digit" else 2,
                      **interval)


class RowCounter(torch.nn.Module):
    """Counts the image rows that pass through the network: network evaluations per image = rows / images
    (the benchmark and the report's few-step section). A CFG step sends 2B rows, so it counts twice, as it
    costs. `student_info` sees through it (it unwraps `.model`)."""

    def __init__(self, model):
        super().__init__()
        self.model, self.rows = model, 0

    def forward(self, x, *args):
        self.rows += x.shape[0]
        return self.model(x, *args)


class TimedModel(torch.nn.Module):
    """Wraps the UNet to count time spent in the network (for the time split report), under the autocast
    of the device its inputs are on (bf16 on the CPU; bf16 or fp16 on CUDA, difflab.device.autocast)."""

    def __init__(self, model: torch.nn.Module, bf16: bool):
        super().__init__()
        self.model, self.bf16, self.seconds = model, bf16, 0.0

    def forward(self, x, *args):
        t0 = time.perf_counter()
        with autocast(x.device, enabled=self.bf16):
            out = self.model(x, *args).float()
        sync(x.device)  # CUDA kernels run asynchronously: without this the split would count launches only
        self.seconds += time.perf_counter() - t0
        return out


def sample_chunks(model, schedule, cfg: GenerateConfig, domains=DOMAINS, progress: bool = True,
                  callback=None):
    """Yield (items, images (B, 3, 28, 28) float32 in [-1, 1] on the CPU) chunk by chunk;
    `callback(chunk_index, StepOutput)` sees every step (its tensors on the device; used to draw the
    reverse process). The model is moved to `cfg.device` (in place) and runs there.

    The starting noise is drawn chunk by chunk from one CPU generator, in layout order: the same values as
    one draw of all of it (torch's CPU normal sampler is sequential; tested), in memory bounded by a chunk,
    and the same values on every device (drawn on the CPU, then moved).
    """
    cfg = resolve(cfg, model)
    rows = concept_rows(model) if cfg.concepts else None
    if cfg.concepts and not getattr(unwrap(model), "concept_dirs", None):
        raise DifflabError("--concept: apply the concepts to the model first (generate() and "
                           "concepts.concept.load_with_concepts do)")
    device = resolve_device(cfg.device)
    move(model, device)
    items = layout(cfg, domains, rows)
    g = cpu_generator(cfg.seed)
    sampler = make_sampler(cfg, schedule, model)
    n_chunks = (len(items) + cfg.batch_size - 1) // cfg.batch_size
    bar = tqdm(total=n_chunks * len(sampler.timesteps), desc="sampling", disable=not progress,
               dynamic_ncols=True)
    for c in range(n_chunks):
        chunk = items[c * cfg.batch_size:(c + 1) * cfg.batch_size]
        x_T = randn((len(chunk), 3, 28, 28), g, device)
        digits, doms = label_indices(chunk, rows, device)
        eps_fn = make_eps_fn(model, cfg, digits, doms, schedule)
        gc = stream_generator(cfg.seed, c + 1)  # per-step noise (DDPM, eta > 0): CPU too

        def step_cb(out, c=c):
            bar.update(1)
            if callback is not None:
                callback(c, out)

        with torch.inference_mode():
            x0 = sampler.sample(eps_fn, x_T, gc, step_cb)
        if not torch.isfinite(x0).all():
            raise DifflabError("the sampler produced non-finite values (NaN/inf): check the model's weights "
                               "and the guidance; nothing was written")
        yield chunk, x0.clamp(-1, 1).cpu()
    bar.close()


def generate(out_dir, model, schedule, cfg: GenerateConfig, overwrite: bool = False, progress: bool = True
             ) -> dict:
    """Write the standard layout (`layout`: OUT/{domain}/{digit}_{NNN}.png) and a grid OUT/{domain}_grid.png
    of each domain drawn with the ten digits; return timings {'total_s', 'network_s', 'other_s', 'images'}.

    With `cfg.concepts` (applied here to `model`, a base model, unless it already carries them) only the
    concepts' images are written: OUT/STYLE/{d}_{NNN}.png + OUT/STYLE_grid.png for a style,
    OUT/{mnistm,svhn}/SYMBOL_{NNN}.png for a symbol, OUT/STYLE/SYMBOL_{NNN}.png for both."""
    cfg = resolve(cfg, model)
    model = with_concepts(model, cfg)
    rows = concept_rows(model) if cfg.concepts else None
    items = layout(cfg, rows=rows)
    what = "student" if student_info(model) else cfg.sampler
    t0 = time.perf_counter()
    timed = TimedModel(model, cfg.bf16)
    with staged_output_dir(out_dir, overwrite) as stage:
        # a grid's rows are the digits 0-9: none when a symbol replaces them
        tiles: dict[str, list[np.ndarray]] = {} if rows and rows["digit"] else {m: [] for m, _, _ in items}
        for chunk, x0 in sample_chunks(timed, schedule, cfg, progress=progress):
            pixels = to_uint8(x0)
            for (m, d, k), img in zip(chunk, pixels):
                save_png(stage / m / f"{d}_{k:03d}.png", img)
                if k <= 10 and m in tiles:
                    tiles[m].append(img)
        for m in tiles:
            ncols = min(10, cfg.per_digit)
            save_image(grid(tiles[m], ncols, scale=2, row_labels=[str(d) for d in range(10)],
                            title=f"{m}: guidance {cfg.guidance}, {what} {cfg.steps} steps, seed {cfg.seed}"),
                       stage / f"{m}_grid.png")
    total = time.perf_counter() - t0
    return {"total_s": total, "network_s": timed.seconds, "other_s": total - timed.seconds,
            "images": len(items)}
