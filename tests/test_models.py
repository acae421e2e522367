"""Issue 14, one way to do each thing: model loading lives in difflab.models, with one strict state-dict
loader and `NoiseSchedule.to_dict/from_dict`; no job package imports another; one seed-derivation helper.

The bit-for-bit checks compare the loaders' output with the raw safetensors files read by safetensors
itself, so a loader that reorders, casts or renames anything on the way fails here, not in a picture.
"""

import ast
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import difflab
from difflab.device import SEED_STRIDE, stream_generator
from difflab.diffusion.schedule import NoiseSchedule
from difflab.errors import DifflabError
from difflab.models.digits import (
    DEFAULT_MODEL,
    STUDENT_MODEL,
    default_classifier_path,
    load_classifier,
    load_digit_model,
    save_digit_model,
)
from difflab.models.loaders import load_digits
from difflab.models.state import load_state_strict, strip_wrapper_prefixes
from difflab.models.unet import ConditionalUNet, UNetConfig

SRC = Path(difflab.__file__).parent
JOBS = ("digits", "ddim", "clip", "personalize", "report")
ALLOWED = {"report": set(JOBS)}  # the report composes every job; nothing else crosses between jobs


@pytest.mark.parametrize("kind", ["linear", "scaled_linear", "cosine"])
def test_schedule_dict_round_trip_is_exact(kind):
    s = NoiseSchedule(kind, 50, 2e-4, 3e-2)
    d = s.to_dict()
    assert d == {"kind": kind, "num_train_timesteps": 50, "beta_start": 2e-4, "beta_end": 3e-2}
    back = NoiseSchedule.from_dict(d)
    assert back == s and torch.equal(back.betas, s.betas) and torch.equal(back.alphas_cumprod, s.alphas_cumprod)
    with pytest.raises(TypeError):
        NoiseSchedule.from_dict({**d, "offset": 1})  # another version's key: loaders make it one line


@pytest.mark.parametrize("path", [DEFAULT_MODEL, STUDENT_MODEL], ids=["teacher", "student"])
def test_shipped_models_load_bit_for_bit(path):
    raw = load_file(str(path))
    model, schedule, meta = load_digit_model(path)
    state = model.state_dict()
    assert state.keys() == raw.keys()
    for k, v in raw.items():  # stored in float16 (half the size), run in float32: the cast is exact
        assert state[k].dtype == torch.float32 and torch.equal(state[k], v.float()), k
    assert schedule.to_dict() == meta["schedule"]
    # the same network output as torch's own loader on the raw tensors (1 image, 1 step: cheap)
    ref = ConditionalUNet(UNetConfig.from_dict(meta["unet"]))
    ref.load_state_dict(raw)
    x, t = torch.randn(1, 3, 28, 28), torch.tensor([500])
    d, m = torch.tensor([3]), torch.tensor([0])
    w = torch.tensor([3.0]) if model.config.guidance_input else None
    with torch.no_grad():
        assert torch.equal(model(x, t, d, m, w), ref.eval()(x, t, d, m, w))


def test_eps_adapter_matches_the_digit_model(tmp_path):
    """load_digits (the ddim job's adapter) is the digit model + CFG, with its schedule as a dict."""
    torch.manual_seed(1)
    net = ConditionalUNet(UNetConfig(base_channels=8, channel_mults=(1, 2), num_res_blocks=1, groups=4))
    with torch.no_grad():
        for p in net.parameters():  # the output conv starts at zero: random weights make eps non-trivial
            p.normal_(0, 0.1)
    path = tmp_path / "m.safetensors"
    save_digit_model(path, net, NoiseSchedule("linear", 100))
    eps = load_digits(path, digit=4, domain="svhn", guidance=1.0, device="cpu")
    model, schedule, _ = load_digit_model(path)
    assert eps.schedule == schedule.to_dict() and eps.sample_shape == (3, 28, 28)
    x = torch.randn(2, 3, 28, 28)
    with torch.no_grad():
        want = model(x, torch.full((2,), 40), torch.full((2,), 4), torch.full((2,), 1))
        assert torch.equal(eps(x, 40), want)


def test_shipped_classifiers_load_bit_for_bit():
    for domain in ("mnistm", "svhn"):
        path = default_classifier_path(domain)
        raw = load_file(str(path))
        model, meta = load_classifier(path)
        assert meta["domain"] == domain
        state = model.state_dict()
        assert state.keys() == raw.keys() and all(torch.equal(state[k], v.to(state[k].dtype)) for k, v in raw.items())


def test_one_strict_loader_for_our_files_and_users():
    net = torch.nn.Sequential(torch.nn.Linear(2, 3))
    good = {k: torch.ones_like(v) for k, v in net.state_dict().items()}
    load_state_strict(net, {f"module.{k}": v for k, v in good.items()}, "ddp.pt")  # DDP prefix dropped
    assert torch.equal(net[0].weight, torch.ones(3, 2))
    assert strip_wrapper_prefixes(good, set(good)) is good  # our own files: untouched
    with pytest.raises(DifflabError, match=r"x.safetensors: weights do not match the model config: missing keys 1 "
                                           r"\(0.bias\)"):
        load_state_strict(net, {"0.weight": good["0.weight"]}, "x.safetensors")
    with pytest.raises(DifflabError, match="do not match the model class: shape mismatch at 0.weight: file"):
        load_state_strict(net, {**good, "0.weight": torch.ones(2, 2)}, "u.pt", against="model class")
    with pytest.raises(DifflabError, match="'0.bias' holds 1 NaN/inf"):
        load_state_strict(net, {**good, "0.bias": torch.tensor([0.0, float("nan"), 0.0])}, "n.pt")
    with pytest.raises(DifflabError, match="'0.weight' has dtype int64"):
        load_state_strict(net, {**good, "0.weight": torch.ones(3, 2, dtype=torch.long)}, "i.pt")


def test_stream_generator_is_the_documented_formula():
    for seed, i in ((0, 0), (5, 3), (2**32 - 1, 10)):
        want = torch.Generator().manual_seed(seed * SEED_STRIDE + i)
        assert torch.equal(torch.randn(4, generator=stream_generator(seed, i)), torch.randn(4, generator=want))
    assert SEED_STRIDE == 100_003  # changing it changes every image made with a seed


def _imports(path: Path) -> set[str]:
    """Every difflab module `path` imports, at top level or inside a function."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("difflab"):
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("difflab"))
    return found


def test_no_job_imports_another_and_core_imports_no_job():
    bad = []
    for path in sorted(SRC.rglob("*.py")):
        rel = path.relative_to(SRC).parts
        own = rel[0] if len(rel) > 1 else None
        for mod in _imports(path):
            parts = mod.split(".")
            target = parts[1] if len(parts) > 1 else None
            if target in JOBS and target != own and target not in ALLOWED.get(own, set()):
                if own in JOBS or own is None or own == "models":
                    bad.append(f"{'/'.join(rel)} imports {mod}")
    # difflab/cli.py registers every job's subcommands: the one top-level module allowed to name them all
    assert [b for b in bad if not b.startswith("cli.py ")] == []


def test_report_modules_import_no_circle():
    folder = SRC / "report"
    mods = {p.stem for p in folder.glob("*.py")} - {"__init__"}
    edges = {m: {x.split(".")[2] for x in _imports(folder / f"{m}.py") if x.startswith("difflab.report.")} & mods
             for m in mods}

    def reaches(a, b, seen=()):
        return any(n == b or (n not in seen and reaches(n, b, (*seen, n))) for n in edges[a])

    assert [m for m in mods if reaches(m, m)] == []
    assert [m for m in mods if m != "cli" and "run" in edges[m]] == []  # sections import Context from context.py
