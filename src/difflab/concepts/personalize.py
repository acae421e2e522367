"""`difflab digits personalize`: teach the digit model a new style (domain) or symbol (digit) from a few images.

The model learns one new embedding row (concepts/concept.py): style -> domain index 3, symbol -> digit
index 11, initialised as a copy of the null row. Methods:
- `ti` (textual inversion, Gal et al. 2022): only that row trains; every base weight stays as it was.
- `lora` (Hu et al. 2021, through peft): rank-r adapters on the residual blocks' convolutions and FiLM
  linears and the attention's qkv/out, plus the row.
- `finetune` (DreamBooth's recipe, Ruiz et al. 2023): every weight plus the row; `prior_weight` is the
  share of each batch drawn from the old domains' offline data (difflab.data.load_domain: the recipes'
  images rather than the model's own samples, so it costs no sampling) against forgetting them.
The loss is the teacher's (training/train.py): epsilon MSE at a uniform random t, with the labels dropped
to null at the teacher's rates (its `drop_*`), so the unconditional branches classifier-free guidance
needs are learned for the new row too. Afterwards the concept is applied as `digits generate` applies it
and `retained_acc` measures the old domains: each domain's shipped classifier on 10 images per digit
(DDIM 20, w 3).
"""

from __future__ import annotations

import math
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from difflab.checks import check_count, check_number, check_seed
from difflab.concepts.concept import (
    FORMAT,
    KINDS,
    LORA_TARGETS,
    METHODS,
    TABLES,
    VERSION,
    apply_concepts,
    base_digest,
    base_state_dict,
    check_name,
    extend_tables,
    import_peft,
    load_concept,
    write_concept,
    write_meta,
)
from difflab.data import DOMAINS, load_domain, to_model_range
from difflab.device import autocast, check_device, cpu_generator, grad_scaler, move, resolve_device, scaled_step
from difflab.errors import DifflabError
from difflab.io import image_files, load_image, staged_output_dir, to_uint8
from difflab.runtime import machine_line

# an embedding row needs a high lr, all weights a low one. TI on the shipped teacher (lcd style, 20 images,
# 300 steps): lr 5e-3 moved the row 2.4 from its start (the two domains' rows lie 14 apart), 3e-2 5.6,
# 1e-1 8.2, with no visible difference in the samples between the last two
DEFAULT_LR = {"ti": 3e-2, "lora": 1e-3, "finetune": 2e-5}
# lora/finetune: the new row trains at TI's rate beside the slow adapters or weights ("pivotal tuning"):
# at lora's 1e-3 the row barely moves in 300 steps; at 3e-2 lcd 0.945 -> 0.955, blueprint 0.895 -> 0.915, the
# symbol at 900 steps 0.855 -> 0.900, retention unchanged (docs/RESULTS.md §8). For ti the row IS the
# trained weight: its rate is --lr.
DEFAULT_ROW_LR = {"lora": 3e-2, "finetune": 3e-2}
DEFAULT_PRIOR = {"ti": 0.0, "lora": 0.25, "finetune": 0.25}
PRIOR_SIZE = 1000  # recipe images per old domain for prior preservation (the size `digits eval` caches)
MAX_SHIFT = 7  # --augment-shift: a quarter of the 28-pixel image
DIGIT_PREFIX = re.compile(r"^(\d)_")


@dataclass
class PersonalizeConfig:
    """Settings of `difflab digits personalize` (the CLI's flags come from these fields)."""

    images_dir: str
    kind: str  # "domain" (a new style; files {d}_*.png) or "digit" (a new symbol; every image is it)
    name: str
    out_dir: str
    method: str = "ti"  # ti | lora | finetune
    domain: str | None = None  # --as digit: the known domain the symbol is drawn in (mnistm | svhn)
    steps: int = 300
    lr: float | None = None  # None: DEFAULT_LR of the method
    row_lr: float | None = None  # lora/finetune: the new row's own peak rate; None: DEFAULT_ROW_LR
    rank: int = 4  # LoRA rank
    batch_size: int = 32
    # concept images moved by up to this many whole pixels each draw (0: as given): more distinct images from
    # 20 (an exact copy of 20 images lacks the style's variety: docs/RESULTS.md §8); old-domain images never
    augment_shift: int = 0
    prior_weight: float | None = None  # share of each batch from the old domains; None: DEFAULT_PRIOR
    seed: int = 0
    model: str = "teacher"  # the base: teacher or a teacher-type .safetensors (not a distilled student)
    eval_per_digit: int = 10  # images per digit and old domain for retained_acc (0: skip)
    bf16: bool = True
    device: str = "auto"
    overwrite: bool = False

    def __post_init__(self):
        """Checked when built, so the CLI and the API share one check, before any image is read."""
        self.check()

    def check(self) -> None:
        if self.kind not in KINDS:
            raise DifflabError(f"--as must be domain or digit, got {self.kind!r}")
        if self.method not in METHODS:
            raise DifflabError(f"--method must be one of {', '.join(METHODS)}, got {self.method!r}")
        check_name(self.name)
        if self.kind == "digit" and self.domain not in DOMAINS:
            raise DifflabError(f"--as digit needs --domain {'|'.join(DOMAINS)}: the known domain the symbol is "
                               f"drawn in (got {self.domain!r})")
        if self.kind == "domain" and self.domain is not None:
            raise DifflabError("--domain applies to --as digit; a new style (--as domain) is its own domain")
        for name in ("steps", "batch_size", "rank"):
            check_count(name, getattr(self, name))
        check_count("eval_per_digit", self.eval_per_digit, 0)
        check_count("augment_shift", self.augment_shift, 0, MAX_SHIFT)
        if self.lr is not None:
            check_number("lr", self.lr, 0, 1, low_open=True)
        if self.row_lr is not None:
            check_number("row_lr", self.row_lr, 0, 1, low_open=True)
            if self.method == "ti":
                raise DifflabError("--row-lr: ti trains only the row; its rate is --lr")
        if self.prior_weight is not None:
            check_number("prior_weight", self.prior_weight, 0, 1, high_open=True)
            if self.method == "ti" and self.prior_weight > 0:
                raise DifflabError("--prior-weight: ti changes no old weight, so there is nothing to preserve")
        check_seed("seed", self.seed)
        check_device(self.device)

    def learning_rate(self) -> float:
        return DEFAULT_LR[self.method] if self.lr is None else self.lr

    def row_learning_rate(self) -> float:
        if self.method == "ti":
            return self.learning_rate()
        return DEFAULT_ROW_LR[self.method] if self.row_lr is None else self.row_lr

    def prior_share(self) -> float:
        return DEFAULT_PRIOR[self.method] if self.prior_weight is None else self.prior_weight


@dataclass
class PersonalizeResult:
    path: Path  # the concept folder
    meta: dict  # its concept.json


@dataclass
class ConceptImages:
    images: torch.Tensor  # (N, 3, 28, 28) float32 in [-1, 1]
    digits: torch.Tensor | None  # (N,) long in 0-9 from the file names (--as domain), else None
    missing: list[int]  # digits without an image (--as domain)


def read_images(cfg: PersonalizeConfig) -> ConceptImages:
    """IMAGES_DIR's images, any size (resized to 28x28), grayscale or RGB (-> RGB). --as domain takes the
    digit from each file name's prefix ({d}_*.png); missing digits are reported on stderr, not refused."""
    folder = Path(cfg.images_dir)
    if not folder.is_dir():
        raise DifflabError(f"{folder}: images folder not found")
    try:
        files = image_files(folder)
    except OSError as e:
        raise DifflabError(f"{folder}: cannot read the images folder ({e.strerror})") from None
    if not files:
        raise DifflabError(f"{folder}: no images (png, jpg, ...) to learn {cfg.name!r} from")
    digits = []
    if cfg.kind == "domain":
        for p in files:
            m = DIGIT_PREFIX.match(p.name)
            if m is None:
                raise DifflabError(f"{p}: --as domain needs the digit as the file name's prefix, e.g. 3_a.png")
            digits.append(int(m[1]))
    images = to_model_range(np.stack([load_image(p, size=28) for p in files]))
    missing = sorted(set(range(10)) - set(digits)) if cfg.kind == "domain" else []
    if missing:
        print(f"difflab: {folder}: no images of digit(s) {', '.join(map(str, missing))}; the style is learned "
              "from the others", file=sys.stderr)
    return ConceptImages(images, torch.tensor(digits) if digits else None, missing)


def prior_data() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Old-domain images for prior preservation, as many per domain: (images (N, 3, 28, 28) in [-1, 1],
    digits (N,), domains (N,)) from the offline recipes (cached after their first use)."""
    sets = [load_domain(m, "train", size=PRIOR_SIZE, seed=0) for m in DOMAINS]
    n = min(len(s) for s in sets)
    images = torch.cat([to_model_range(s.images[:n]) for s in sets])
    digits = torch.cat([torch.from_numpy(s.labels[:n]).long() for s in sets])
    domains = torch.arange(len(DOMAINS)).repeat_interleave(n)
    return images, digits, domains


def _load_base(name):
    from difflab.models.digits import load_digit_model

    model, schedule, meta = load_digit_model(name)
    if model.config.guidance_input:
        raise DifflabError(f"--model {name}: a distilled student cannot be personalized (it was trained for other "
                           "outputs); personalize its teacher, whose concepts apply to the student too")
    return model, schedule, meta


def _drop_rates(base_meta: dict):
    """The teacher's condition dropout (its recorded training config; TrainConfig's defaults otherwise)."""
    from difflab.training.config import TrainConfig

    train = base_meta.get("train") or {}
    keys = ("drop_both", "drop_digit", "drop_domain")
    return TrainConfig(**{k: train[k] for k in keys if isinstance(train.get(k), (int, float))})


def build_model(base, cfg: PersonalizeConfig, g: torch.Generator):
    """(trainable copy of `base` with the new row, its parameters to train). LoRA adapters start as peft
    makes them (B = 0, so the model starts unchanged), with A drawn from `g` instead of torch's global RNG."""
    model = extend_tables(base, int(cfg.kind == "domain"), int(cfg.kind == "digit"))
    model.requires_grad_(cfg.method == "finetune")
    if cfg.method == "lora":
        peft = import_peft()
        lora = peft.LoraConfig(r=cfg.rank, lora_alpha=cfg.rank, lora_dropout=0.0, target_modules=LORA_TARGETS,
                               bias="none")
        model = peft.inject_adapter_in_model(lora, model)  # marks only the adapters trainable
        for name, p in sorted(model.named_parameters()):
            if ".lora_A." in name:  # peft's own init (kaiming uniform, a = sqrt 5), from our generator
                torch.nn.init.kaiming_uniform_(p.data, a=math.sqrt(5), generator=g)
    getattr(model, TABLES[cfg.kind]).extra.requires_grad_(True)
    return model, [p for p in model.parameters() if p.requires_grad]


def make_batches(data: ConceptImages, prior, cfg: PersonalizeConfig, model, drops, g: torch.Generator):
    """draw() -> (x0 (B, 3, 28, 28) in [-1, 1], digits (B,), domains (B,)) on the CPU: concept images with
    their labels (each shifted by up to cfg.augment_shift pixels), a `prior_share` of old-domain images, then
    the teacher's condition dropout."""
    from difflab.data.augment import random_shift
    from difflab.training.common import drop_conditions

    c = model.config
    n = len(data.images)
    if cfg.kind == "domain":
        digits, domains = data.digits, torch.full((n,), c.num_domains + 1)
    else:
        digits, domains = torch.full((n,), c.num_digits + 1), torch.full((n,), DOMAINS.index(cfg.domain))
    n_prior = round(cfg.batch_size * cfg.prior_share()) if prior is not None else 0

    def draw():
        idx = torch.randint(n, (cfg.batch_size - n_prior,), generator=g)
        x0, d, m = random_shift(data.images[idx], cfg.augment_shift, g), digits[idx], domains[idx]
        if n_prior:
            j = torch.randint(len(prior[0]), (n_prior,), generator=g)
            x0, d, m = torch.cat([x0, prior[0][j]]), torch.cat([d, prior[1][j]]), torch.cat([m, prior[2][j]])
        d, m = drop_conditions(d, m, g, drops, null_digit=c.num_digits, null_domain=c.num_domains)
        return x0, d, m

    return draw


def fit(model, params, schedule, draw, cfg: PersonalizeConfig, g: torch.Generator, progress: bool) -> float:
    """AdamW over `params` with warm-up + cosine (training/common.py lr_at), the teacher's epsilon-MSE loss;
    returns the loss's running mean at the end. Every draw comes from `g` (CPU), the model runs on the device."""
    from difflab.training.common import CosineSchedule, lr_at

    dev = resolve_device(cfg.device)
    move(model, dev)
    sched = CosineSchedule(lr=cfg.learning_rate(), steps=cfg.steps, warmup_steps=cfg.steps // 20, min_lr_ratio=0.1)
    # the new row may learn at its own rate (--row-lr, "pivotal tuning": a fast row beside slow adapters)
    row = getattr(model, TABLES[cfg.kind]).extra
    groups = [{"params": [row], "scale": cfg.row_learning_rate() / sched.lr},
              {"params": [p for p in params if p is not row], "scale": 1.0}]
    opt = torch.optim.AdamW([gr for gr in groups if gr["params"]], lr=sched.lr, weight_decay=0.0)
    scaler = grad_scaler(dev, cfg.bf16)  # active for fp16 autocast (CUDA cards without bf16) only
    model.train()
    avg = None
    bar = tqdm(range(cfg.steps), desc=f"personalize {cfg.name} ({cfg.method})", disable=not progress,
               dynamic_ncols=True)
    for step in bar:
        x0, digits, domains = draw()
        t = torch.randint(schedule.num_train_timesteps, (len(x0),), generator=g)
        noise = torch.randn(x0.shape, generator=g)
        x_t = schedule.q_sample(x0, t, noise).to(dev)
        for group in opt.param_groups:
            group["lr"] = lr_at(step, sched) * group["scale"]
        with autocast(dev, cfg.bf16):
            pred = model(x_t, t.to(dev), digits.to(dev), domains.to(dev))
        loss = F.mse_loss(pred.float(), noise.to(dev))  # DDPM's L_simple, as the teacher was trained
        if not math.isfinite(loss.item()):
            raise DifflabError(f"personalize stopped: the loss became {loss.item()} at step {step + 1} (try a "
                               "lower --lr); nothing was written")
        scaled_step(loss, opt, scaler, params, 1.0)  # the teacher's clipping
        avg = loss.item() if avg is None else 0.98 * avg + 0.02 * loss.item()
        bar.set_postfix(loss=f"{avg:.4f}")
    model.eval()
    return float(avg)


def retained_accuracy(model, schedule, cfg: PersonalizeConfig, progress: bool) -> dict | None:
    """{mnistm, svhn: accuracy, eval: the sampling settings}: each old domain's shipped classifier on
    `eval_per_digit` images per digit that `model` (concepts applied) draws at generate's defaults
    (DDIM 20, w 3), as PNG pixels. None when eval_per_digit is 0."""
    from difflab.digits.classify import accuracy, predict
    from difflab.digits.generate import GenerateConfig, TimedModel, resolve, sample_chunks
    from difflab.models.digits import default_classifier_path, load_classifier

    if not cfg.eval_per_digit:
        return None
    gcfg = resolve(GenerateConfig(per_digit=cfg.eval_per_digit, seed=cfg.seed, bf16=cfg.bf16, device=cfg.device),
                   model)
    images: dict[str, list] = {m: [] for m in DOMAINS}
    labels: dict[str, list] = {m: [] for m in DOMAINS}
    for chunk, x0 in sample_chunks(TimedModel(model, cfg.bf16), schedule, gcfg, progress=progress):
        x = to_model_range(to_uint8(x0))  # what `digits eval` reads back from the PNGs
        for (m, d, _), img in zip(chunk, x):
            images[m].append(img)
            labels[m].append(d)
    acc = {}
    for m in DOMAINS:
        clf, _ = load_classifier(default_classifier_path(m), cfg.device)
        acc[m] = accuracy(predict(clf, torch.stack(images[m]))[0], torch.tensor(labels[m]))
    return {**acc, "eval": {"per_digit": gcfg.per_digit, "sampler": gcfg.sampler, "steps": gcfg.steps,
                            "guidance": gcfg.guidance, "seed": gcfg.seed}}


def _meta(cfg: PersonalizeConfig, data: ConceptImages, model, digest: str, drops) -> dict:
    table = getattr(model, TABLES[cfg.kind])
    meta = {
        "format": FORMAT, "version": VERSION, "name": cfg.name, "kind": cfg.kind, "method": cfg.method,
        "domain": cfg.domain, "steps": cfg.steps, "lr": cfg.learning_rate(),
        "row_lr": cfg.row_learning_rate(), "batch_size": cfg.batch_size,
        "rank": cfg.rank if cfg.method == "lora" else None, "prior_weight": cfg.prior_share(), "seed": cfg.seed,
        "augment_shift": cfg.augment_shift,
        "images": {"count": len(data.images), "folder": str(cfg.images_dir)},
        "base_model": str(cfg.model), "base_sha256": digest, "embedding_dim": int(table.extra.shape[1]),
        "row": {"table": TABLES[cfg.kind], "index": table.base.num_embeddings, "init": "the null row"},
        "condition_dropout": {"drop_both": drops.drop_both, "drop_digit": drops.drop_digit,
                              "drop_domain": drops.drop_domain},
        "machine": machine_line(device=cfg.device),
        "date": time.strftime("%Y-%m-%d"),
    }
    if cfg.kind == "domain":
        meta["images"].update(digits=sorted(set(data.digits.tolist())), missing_digits=data.missing)
    if cfg.method == "lora":
        meta["lora"] = {"r": cfg.rank, "lora_alpha": cfg.rank, "lora_dropout": 0.0, "target_modules": LORA_TARGETS,
                        "peft_version": import_peft().__version__}
    return meta


def _concept_tensors(model, cfg: PersonalizeConfig) -> dict:
    """The files' tensors (CPU): the row; peft's adapter state dict (lora); the base-shaped weights (finetune)."""
    out = {"row": getattr(model, TABLES[cfg.kind]).extra[0].detach().cpu()}
    if cfg.method == "lora":
        out["lora"] = {k: v.detach().cpu() for k, v in import_peft().get_peft_model_state_dict(model).items()}
    if cfg.method == "finetune":
        out["unet"] = {k: v.detach().cpu() for k, v in base_state_dict(model).items()}
    return out


def personalize(cfg: PersonalizeConfig, progress: bool = True) -> PersonalizeResult:
    """Learn the concept and write CONCEPT_DIR (staged: nothing is written unless all of it succeeds)."""
    cfg.check()
    if cfg.method == "lora":
        import_peft()  # refuse before any work
    data = read_images(cfg)
    base, schedule, base_meta = _load_base(cfg.model)
    digest = base_digest(base)
    drops = _drop_rates(base_meta)
    with staged_output_dir(cfg.out_dir, cfg.overwrite) as stage:
        t0 = time.perf_counter()
        g = cpu_generator(cfg.seed)
        model, params = build_model(base, cfg, g)
        prior = prior_data() if cfg.method != "ti" and cfg.prior_share() > 0 else None
        draw = make_batches(data, prior, cfg, model, drops, g)
        loss = fit(model, params, schedule, draw, cfg, g, progress)
        meta = {**_meta(cfg, data, model, digest, drops), "final_loss": round(loss, 5)}
        meta["wall_s"] = round(time.perf_counter() - t0, 1)
        write_concept(stage, meta, **_concept_tensors(model, cfg))
        t1 = time.perf_counter()
        # measured on the concept as written and as `digits generate` applies it
        adapted = apply_concepts(base, [load_concept(stage)])
        acc = retained_accuracy(adapted, schedule, cfg, progress)
        meta["retained_acc"] = None if acc is None else {m: acc[m] for m in DOMAINS}
        meta["retained_eval"] = None if acc is None else {**acc["eval"], "eval_s": round(time.perf_counter() - t1, 1)}
        write_meta(stage, meta)
    return PersonalizeResult(Path(cfg.out_dir), meta)
