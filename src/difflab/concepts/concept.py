"""Personalized digit concepts: a new style (domain) or a new symbol (digit) added to the digit UNet.

The UNet adds `digit_emb` (11 rows: 0-9, 10 = null) and `domain_emb` (3 rows: mnistm, svhn, 2 = null) into
its time embedding. A concept adds ONE row to one of them, appended after the existing rows so that null
keeps its index (a style is domain 3, a symbol digit 11) and the unconditional branch of classifier-free
guidance is unchanged. `digits personalize` (concepts/personalize.py) learns the row, alone (`ti`), with
low-rank adapters (`lora`, through peft) or with all weights (`finetune`).

A concept is a folder:
- `concept.json`: name, kind (domain|digit), method, the training settings, wall_s, the images used, the
  base model's weights digest (`base_sha256`), the embedding dim and `retained_acc`;
- `embedding.safetensors`: the new row, tensor "row" (D,) float32 (every method; D = 4 x base channels);
- `adapter_model.safetensors` (lora): peft's state dict of the UNet (`get_peft_model_state_dict` keys,
  e.g. "down.0.0.conv1.lora_A.weight"), its LoraConfig in concept.json["lora"];
- `unet.safetensors` (finetune): the whole fine-tuned UNet, float16, the base model's keys.

Concepts are applied to the base model they were trained on (weights digest checked), or to a distilled
student of it when the student's metadata names that teacher (ti and lora only: a finetune concept
replaces the teacher's weights, which the student does not have).
"""

from __future__ import annotations

import copy
import json
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from difflab.data import DOMAINS
from difflab.errors import DifflabError
from difflab.io import atomic_path, load_checkpoint, read_json, save_checkpoint, tensor_digest
from difflab.models.state import load_state_strict, unwrap

FORMAT = "difflab-digit-concept"
VERSION = 1
CONCEPT_FILE = "concept.json"
EMBEDDING_FILE = "embedding.safetensors"
LORA_FILE = "adapter_model.safetensors"  # peft's file name for an adapter's weights
UNET_FILE = "unet.safetensors"
KINDS = ("domain", "digit")
METHODS = ("ti", "lora", "finetune")
TABLES = {"domain": "domain_emb", "digit": "digit_emb"}
# the LoRA targets of models/unet.py: every residual block's convolutions and FiLM linear, and the
# attention's qkv/out 1x1 convolutions (a full match on the module's name; the UNet's final `out` is a
# Sequential at the top level, which the leading `.*\.` keeps out)
LORA_TARGETS = r".*\.(conv1|conv2|emb|qkv|out)$"
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")


def check_name(name) -> None:
    """A concept name is a folder and file-name prefix in `digits generate`'s layout: refuse one that is
    empty, has other characters, or collides with the shipped domains or digits."""
    if not isinstance(name, str) or not name:
        raise DifflabError("--name: give the concept a name (letters, digits, '_' or '-')")
    if not NAME_RE.match(name):
        raise DifflabError(f"--name {name!r}: use 1-64 letters, digits, '_' or '-', starting with a letter or digit")
    if name.lower() in DOMAINS or name in [str(d) for d in range(10)]:
        raise DifflabError(f"--name {name!r} collides with a shipped domain or digit (mnistm, svhn, 0-9)")


class ExtendedEmbedding(nn.Module):
    """An nn.Embedding with `extra` rows appended: forward(idx (B,) long) -> (B, D) rows of
    cat(base.weight (n, D), extra (k, D)), so indices below n give exactly the base table's rows."""

    def __init__(self, base: nn.Embedding, extra: torch.Tensor):
        super().__init__()
        self.base = base
        self.extra = nn.Parameter(extra.detach().clone().to(base.weight))

    @property
    def weight(self) -> torch.Tensor:
        return torch.cat([self.base.weight, self.extra])

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        return F.embedding(idx, self.weight)


def base_digest(model: nn.Module) -> str:
    """sha256 of a base UNet's weights as loaded (difflab.io.tensor_digest of its state dict): the same
    for the same weights however the file was written (float16 or float32 on disk, other metadata)."""
    return tensor_digest(unwrap(model).state_dict())


def extend_tables(model: nn.Module, new_domains: int = 0, new_digits: int = 0) -> nn.Module:
    """A copy of `model` whose domain/digit tables have `new_domains`/`new_digits` rows appended (indices
    num_domains + 1, ... and num_digits + 1, ...), each starting as a copy of the null row: the model
    then starts as its label-unconditional self for the new label. `model` itself is not changed."""
    m = copy.deepcopy(model)
    cfg = m.config
    for attr, n, null in (("domain_emb", new_domains, cfg.num_domains), ("digit_emb", new_digits, cfg.num_digits)):
        if n:
            base = getattr(m, attr)
            setattr(m, attr, ExtendedEmbedding(base, base.weight[null].detach().expand(n, -1)))
    return m


@dataclass
class Concept:
    """A loaded concept folder: its concept.json and tensors (on the CPU)."""

    path: Path
    meta: dict
    row: torch.Tensor  # (D,) float32: the new embedding row
    lora: dict[str, torch.Tensor] | None = None  # peft state dict (method lora)
    unet: dict[str, torch.Tensor] | None = None  # whole UNet (method finetune)

    @property
    def name(self) -> str:
        return self.meta["name"]

    @property
    def kind(self) -> str:
        return self.meta["kind"]

    @property
    def method(self) -> str:
        return self.meta["method"]


def base_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The state dict of `model` as its base model names it: extended tables back to 'domain_emb.weight'
    with the base rows only (the new rows travel in embedding.safetensors)."""
    state = {}
    for k, v in unwrap(model).state_dict().items():
        if k.endswith("_emb.extra"):
            continue
        state[k.replace("_emb.base.weight", "_emb.weight")] = v
    return state


def write_concept(folder, meta: dict, row: torch.Tensor, lora: dict | None = None, unet: dict | None = None) -> None:
    """Write a concept folder's files (atomically, each): concept.json, the row, the adapters or weights."""
    folder = Path(folder)
    tag = {"concept": meta["name"], "kind": meta["kind"], "method": meta["method"]}
    save_checkpoint(folder / EMBEDDING_FILE, {"row": row.detach().float().reshape(-1)},
                    {"kind": f"{FORMAT}-embedding", **tag})
    if lora is not None:
        save_checkpoint(folder / LORA_FILE, lora, {"kind": f"{FORMAT}-lora", **tag})
    if unet is not None:  # float16 halves the file; the shipped teacher is stored the same way
        save_checkpoint(folder / UNET_FILE, {k: v.half() if v.is_floating_point() else v for k, v in unet.items()},
                        {"kind": f"{FORMAT}-unet", **tag, "stored_dtype": "float16"})
    write_meta(folder, meta)


def write_meta(folder, meta: dict) -> None:
    with atomic_path(Path(folder) / CONCEPT_FILE) as tmp:
        tmp.write_text(json.dumps(meta, indent=2) + "\n")


def _check_meta(path: Path, meta) -> dict:
    where = path / CONCEPT_FILE
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise DifflabError(f"{where}: not a difflab digit concept (no \"format\": \"{FORMAT}\")")
    if meta.get("version") != VERSION:
        raise DifflabError(f"{where}: concept format version {meta.get('version')!r}; this difflab reads {VERSION}")
    for key, allowed in (("kind", KINDS), ("method", METHODS)):
        if meta.get(key) not in allowed:
            raise DifflabError(f"{where}: {key} must be one of {', '.join(allowed)}, got {meta.get(key)!r}")
    try:
        check_name(meta.get("name"))
    except DifflabError as e:
        raise DifflabError(f"{where}: {e}") from None
    if not isinstance(meta.get("base_sha256"), str) or not isinstance(meta.get("embedding_dim"), int):
        raise DifflabError(f"{where}: base_sha256 (string) and embedding_dim (integer) are required")
    if meta["method"] == "lora":
        lora = meta.get("lora") if isinstance(meta.get("lora"), dict) else {}
        r, alpha, targets = lora.get("r"), lora.get("lora_alpha"), lora.get("target_modules")
        if not (isinstance(r, int) and r >= 1 and isinstance(alpha, (int, float)) and isinstance(targets, str)):
            raise DifflabError(f"{where}: a lora concept needs its LoRA config under \"lora\" (r >= 1, lora_alpha, "
                               "target_modules)")
    return meta


def concept_meta(path) -> dict:
    """A concept folder's checked concept.json (kind, method, ...), read without its tensors (generate's
    defaults depend on it)."""
    path = Path(path)
    if not path.is_dir():
        raise DifflabError(f"{path}: concept folder not found")
    return _check_meta(path, read_json(path / CONCEPT_FILE, "concept file"))


def load_concept(path) -> Concept:
    """Read a concept folder; every way it can be broken is one DifflabError line naming the file."""
    path = Path(path)
    meta = concept_meta(path)
    tensors, _ = load_checkpoint(path / EMBEDDING_FILE)
    row = tensors.get("row")
    if row is None or tuple(row.shape) != (meta["embedding_dim"],) or not row.is_floating_point():
        raise DifflabError(f"{path / EMBEDDING_FILE}: expected a float tensor 'row' of shape "
                           f"({meta['embedding_dim']},)")
    concept = Concept(path, meta, row.float())
    if meta["method"] == "lora":
        concept.lora = load_checkpoint(path / LORA_FILE)[0]
    if meta["method"] == "finetune":
        concept.unet = load_checkpoint(path / UNET_FILE)[0]
    return concept


def load_concepts(paths) -> list[Concept]:
    """Load several concept folders and refuse combinations that cannot be drawn together: at most one
    style (domain) and one symbol (digit); a finetune concept (it replaces every weight) alone."""
    concepts = [load_concept(p) for p in paths]
    kinds = [c.kind for c in concepts]
    for kind in KINDS:
        if kinds.count(kind) > 1:
            names = ", ".join(c.name for c in concepts if c.kind == kind)
            raise DifflabError(f"--concept: give at most one {kind} concept at a time, got {names}")
    if len(concepts) > 1 and any(c.method == "finetune" for c in concepts):
        raise DifflabError("--concept: a finetune concept replaces all weights and composes with no other "
                           "concept; make the other one a finetune of it, or use ti/lora concepts")
    return concepts


def check_base(model: nn.Module, concept: Concept, digest: str | None = None) -> None:
    """Refuse a concept made for another base model. `model` is a teacher (its weights digest must be the
    concept's) or a guidance-distilled student whose metadata names a teacher with that digest. `digest`:
    that digest, when the caller has it already (`model_digest`)."""
    model = unwrap(model)
    student = model.config.guidance_input
    if student and concept.method == "finetune":
        raise DifflabError(f"{concept.path}: a finetune concept holds a fine-tuned teacher; it cannot be applied "
                           "to a student (use --model teacher)")
    want, have = concept.meta["base_sha256"], digest or model_digest(model)
    if have != want:
        whose = "this student's teacher" if student else "this model"
        raise DifflabError(f"{concept.path}: concept {concept.name!r} was made for another base model (weights "
                           f"sha256 {want[:12]}..., {whose} {have[:12]}...)")


def model_digest(model: nn.Module) -> str:
    """The digest a concept for `model` must carry: a teacher's own, a student's teacher's."""
    model = unwrap(model)
    return student_teacher_digest(model) if model.config.guidance_input else base_digest(model)


def student_teacher_digest(student: nn.Module) -> str:
    """The weights digest of the teacher a student was distilled from, by its metadata's `teacher` entry:
    "shipped" (a student distilled without --teacher) or a path ending in the shipped teacher's assets/ file
    name is the shipped teacher (wherever difflab is installed); another path must still be a readable file."""
    from difflab.models.digits import DEFAULT_MODEL, SHIPPED_TEACHER, load_digit_model

    ref = (getattr(student, "student", None) or {}).get("teacher")
    if not ref:
        raise DifflabError("this student does not record its teacher: concepts apply to the teacher only "
                           "(--model teacher)")
    shipped = ref == SHIPPED_TEACHER or Path(ref).as_posix().endswith(f"assets/{DEFAULT_MODEL.name}")
    path = DEFAULT_MODEL if shipped else Path(ref)
    if not path.is_file():
        raise DifflabError(f"the student's teacher {ref} is not a readable file: cannot check that the concepts "
                           "were made for it (use --model teacher)")
    teacher, _, _ = load_digit_model(path)
    return base_digest(teacher)


def _merge_loras(model: nn.Module, concepts: list[Concept]) -> nn.Module:
    """Inject each concept's adapters under its own name, load them, and merge W += B A * alpha / r into
    the base layers (peft's merge), leaving plain Conv2d/Linear modules: sampling costs what the base
    model costs, and a style's and a symbol's adapters add up."""
    peft = import_peft()
    from peft.tuners.tuners_utils import BaseTunerLayer

    names = []
    for i, c in enumerate(concepts):
        name = f"concept{i}"
        with warnings.catch_warnings():  # a second adapter warns that the model already has one: intended
            warnings.simplefilter("ignore")
            try:
                model = peft.inject_adapter_in_model(peft.LoraConfig(**lora_config_kwargs(c)), model, adapter_name=name)
            except (TypeError, ValueError) as e:
                raise DifflabError(f"{c.path / CONCEPT_FILE}: unusable LoRA config ({e})") from None
        try:
            result = peft.set_peft_model_state_dict(model, c.lora, adapter_name=name)
        except (RuntimeError, ValueError, KeyError) as e:  # e.g. a tensor of another shape (another rank)
            raise DifflabError(f"{c.path / LORA_FILE}: adapters do not fit this model ({str(e).splitlines()[0]})"
                               ) from None
        missing = [k for k in result.missing_keys if f".{name}." in k]
        if result.unexpected_keys or missing:
            bad = (result.unexpected_keys or missing)[0]
            raise DifflabError(f"{c.path / LORA_FILE}: adapters do not fit this model (e.g. {bad})")
        names.append(name)
    for module_name, module in list(model.named_modules()):
        if isinstance(module, BaseTunerLayer):
            module.merge(safe_merge=True, adapter_names=names)
            parent, _, attr = module_name.rpartition(".")
            setattr(model.get_submodule(parent) if parent else model, attr, module.get_base_layer())
    for attr in ("peft_config", "_hf_peft_config_loaded"):
        if hasattr(model, attr):
            delattr(model, attr)
    return model


def lora_config_kwargs(concept: Concept) -> dict:
    cfg = concept.meta["lora"]
    return {"r": cfg.get("r"), "lora_alpha": cfg.get("lora_alpha"), "lora_dropout": cfg.get("lora_dropout", 0.0),
            "target_modules": cfg.get("target_modules"), "bias": "none"}


def import_peft():
    """peft, imported on first use (it pulls in transformers: seconds); one line when it is missing."""
    try:
        import peft
    except ImportError:
        raise DifflabError("LoRA concepts need the peft package: pip install 'difflab[lora]' (or pip install peft)"
                           ) from None
    return peft


def apply_concepts(model: nn.Module, concepts: list[Concept]) -> nn.Module:
    """A copy of `model` (a base UNet, not changed) with the concepts applied, in eval mode: a finetune
    concept's weights loaded, LoRA adapters merged, and one new table row per concept (styles at
    num_domains + 1, symbols at num_digits + 1). The copy carries `concept_rows` {"domain": {name:
    index}, "digit": {name: index}} and `concept_dirs` (the folders, resolved: `concept_key`), read by
    digits/generate.py."""
    model = unwrap(model)
    if getattr(model, "concept_rows", None):
        raise DifflabError("the model already has concepts applied: apply them all at once to the base model")
    if model.config.guidance_input:  # finetune-on-student first: that refusal says more than a digest's
        for c in concepts:
            if c.method == "finetune":
                check_base(model, c)
    digest = model_digest(model) if concepts else None
    for c in concepts:
        check_base(model, c, digest)
        if c.meta["embedding_dim"] != model.digit_emb.weight.shape[1]:
            raise DifflabError(f"{c.path}: embedding dim {c.meta['embedding_dim']} does not fit this model's "
                               f"{model.digit_emb.weight.shape[1]}")
    by_kind = {k: [c for c in concepts if c.kind == k] for k in KINDS}
    m = extend_tables(model, len(by_kind["domain"]), len(by_kind["digit"]))
    for c in concepts:
        if c.method == "finetune":
            load_state_strict(m, _with_extended_keys(m, c.unet), c.path / UNET_FILE)
    loras = [c for c in concepts if c.method == "lora"]
    if loras:
        m = _merge_loras(m, loras)
    rows: dict[str, dict[str, int]] = {"domain": {}, "digit": {}}
    with torch.no_grad():
        for kind, cs in by_kind.items():
            table = getattr(m, TABLES[kind])
            for i, c in enumerate(cs):
                table.extra[i] = c.row
                rows[kind][c.name] = table.base.num_embeddings + i
    m.concept_rows, m.concept_dirs = rows, concept_key(c.path for c in concepts)
    return m.eval()


def concept_key(paths) -> tuple[str, ...]:
    """Concept folders as resolved paths: 'c/' and './c' name the same concept."""
    return tuple(str(Path(p).resolve()) for p in paths)


def _with_extended_keys(model: nn.Module, state: dict) -> dict:
    """A base-shaped state dict (e.g. 'domain_emb.weight') for a model whose tables are extended
    ('domain_emb.base.weight' + 'domain_emb.extra'; the extra rows are set afterwards)."""
    own = model.state_dict()
    out = {}
    for k, v in state.items():
        ext = k.replace("_emb.weight", "_emb.base.weight")
        out[ext if ext in own and k not in own else k] = v
    for k, v in own.items():
        if k.endswith("_emb.extra"):
            out[k] = v
    return out


def load_with_concepts(model_name, concept_dirs) -> tuple[nn.Module, object, list[Concept]]:
    """(model with the concepts applied, its noise schedule, the concepts) from `--model` and `--concept`
    values: the one-call way to sample with concepts outside `digits generate`."""
    from difflab.models.digits import load_digit_model

    concepts = load_concepts(concept_dirs)
    base, schedule, _ = load_digit_model(model_name)
    return apply_concepts(base, concepts), schedule, concepts
