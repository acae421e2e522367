"""Pretrained epsilon-prediction UNets behind one interface: `eps = model(x_t, t)`.

x_t: (B, C, H, W) float32 on the [-1, 1] image scale (noisy), on `model.device`; t: int timestep in [0, T).
Every loader takes `device` ("auto" | "cpu" | "cuda" | "cuda:N", difflab.device) and puts the network there.
Three sources: our digit checkpoint (+ digit/domain/guidance), a user's own model file + weights, and
a diffusers `UNet2DModel` folder (diffusers imported only then).
"""

from __future__ import annotations

import hashlib
import importlib.util
import inspect
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from difflab.checks import check_digit, check_guidance
from difflab.device import resolve_device
from difflab.errors import DifflabError
from difflab.io import read_json
from difflab.models.state import load_state_strict, read_state_dict


@dataclass
class EpsModel:
    """A noise-prediction network as `eps = model(x_t, t)`; see the module docstring for shapes."""

    fn: Callable[[torch.Tensor, int], torch.Tensor]
    description: str
    sample_shape: tuple[int, int, int] | None = None  # (C, H, W) the network takes, if known
    schedule: dict | None = None  # NoiseSchedule kwargs the weights were trained with, if recorded
    net: torch.nn.Module | None = None
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))  # where fn wants x_t

    def __call__(self, x_t: torch.Tensor, t: int) -> torch.Tensor:
        return self.fn(x_t, t)


def _check_output(out, x: torch.Tensor, what: str) -> torch.Tensor:
    """Unwrap tuple/`.sample` outputs; take eps from learned-variance models (2C channels: eps, var)."""
    if isinstance(out, (tuple, list)):
        out = out[0]
    out = getattr(out, "sample", out)
    if not isinstance(out, torch.Tensor):
        raise DifflabError(f"{what}: forward returned {type(out).__name__}, expected a tensor")
    if out.dim() == 4 and out.shape[1] == 2 * x.shape[1] and out.shape[2:] == x.shape[2:]:
        out = out[:, : x.shape[1]]  # improved/guided-diffusion layout: [eps, variance interpolation]
    if out.shape != x.shape:
        raise DifflabError(f"{what}: output shape {tuple(out.shape)} != input shape {tuple(x.shape)} "
                           "(is it an epsilon-prediction UNet for this noise size?)")
    return out.float()


# ---------------------------------------------------------------- our digit model

def load_digits(path=None, digit: int = 0, domain: str = "mnistm", guidance: float = 3.0, device: str = "auto"
                ) -> EpsModel:
    """Our digit checkpoint (default: the shipped weights) conditioned on one digit and domain, with
    classifier-free guidance `guidance` (0 = unconditional, 1 = conditional, > 1 = guided), on `device`
    (in float32, as before devices existed: DDIM parity with diffusers is checked in float32)."""
    from difflab.data import DOMAINS
    from difflab.diffusion.sampling import cfg_eps_fn
    from difflab.models.digits import DEFAULT_MODEL, load_digit_model

    check_digit("digit", digit)
    if domain not in DOMAINS:
        raise DifflabError(f"--domain must be one of {', '.join(DOMAINS)}, got {domain!r}")
    check_guidance("guidance", guidance)
    dev = resolve_device(device)
    path = Path(path or DEFAULT_MODEL)
    if not path.is_file():
        hint = " (shipped weights not built yet: pass --digits-model)" if path == DEFAULT_MODEL else ""
        raise DifflabError(f"{path}: model file not found{hint}")
    model, schedule, _ = load_digit_model(path)
    model.to(dev)
    fns: dict[int, Callable] = {}  # cfg_eps_fn is built for one batch size: keep one per size seen

    def fn(x: torch.Tensor, t: int) -> torch.Tensor:
        B = x.shape[0]
        if B not in fns:
            fns[B] = cfg_eps_fn(model, torch.full((B,), digit, device=dev),
                                torch.full((B,), DOMAINS.index(domain), device=dev), guidance)
        return fns[B](x, t)

    return EpsModel(fn, f"digits model {path.name}: digit {digit}, {domain}, guidance {guidance:g}",
                    (model.config.in_channels, 28, 28), schedule.to_dict(), model, dev)


# ---------------------------------------------------------------- a user's model file + weights

def _import_class(spec: str):
    file, sep, name = spec.rpartition(":")
    if not sep or not file or not name:
        raise DifflabError(f"--unet-module must look like path/to/file.py:ClassName, got {spec!r}")
    path = Path(file)
    if not path.is_file():
        raise DifflabError(f"{path}: model file not found")
    # a unique module name per file, so two user files both called UNet.py do not collide
    mod_name = f"difflab_user_{path.stem}_{hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:8]}"
    mod_spec = importlib.util.spec_from_file_location(mod_name, path)
    if mod_spec is None or mod_spec.loader is None:
        raise DifflabError(f"{path}: cannot be imported as a Python module")
    module = importlib.util.module_from_spec(mod_spec)
    sys.modules[mod_name] = module  # dataclasses and pickling look modules up here
    sys.path.insert(0, str(path.resolve().parent))  # so the file can import its sibling modules
    try:
        mod_spec.loader.exec_module(module)
    except Exception as e:  # user code: any error becomes one line naming the file
        sys.modules.pop(mod_name, None)
        raise DifflabError(f"{path}: importing it failed ({type(e).__name__}: {e})") from None
    finally:
        sys.path.remove(str(path.resolve().parent))
    cls = getattr(module, name, None)
    if not inspect.isclass(cls):
        found = sorted(k for k, v in vars(module).items()
                       if inspect.isclass(v) and issubclass(v, torch.nn.Module) and v.__module__ == mod_name)
        raise DifflabError(f"{path}: no class {name!r} in this file (nn.Module classes found: "
                           f"{', '.join(found) or 'none'})")
    if not issubclass(cls, torch.nn.Module):
        raise DifflabError(f"{path}: {name} is not a torch.nn.Module")
    return cls


def load_user_unet(spec: str, weights, kwargs_json: str | None = None, weights_key: str | None = None,
                   device: str = "auto") -> EpsModel:
    """`spec` = 'path/to/UNet.py:UNet': import the file, build the class with no arguments or with the
    JSON object `kwargs_json`, load the state dict, move it to `device`. The network is called as
    net(x_t, t) with t a (B,) int64 tensor on x_t's device."""
    dev = resolve_device(device)
    cls = _import_class(spec)
    try:
        kwargs = json.loads(kwargs_json) if kwargs_json else {}
    except json.JSONDecodeError as e:
        raise DifflabError(f"--unet-kwargs is not valid JSON ({e})") from None
    if not isinstance(kwargs, dict):
        raise DifflabError(f"--unet-kwargs must be a JSON object like '{{\"ch\": 64}}', got {kwargs_json}")
    try:
        net = cls(**kwargs)
    except Exception as e:  # user code
        raise DifflabError(f"{spec}: building {cls.__name__}(**{kwargs}) failed "
                           f"({type(e).__name__}: {e})") from None
    path = Path(weights)
    state, where = read_state_dict(path, weights_key)
    load_state_strict(net, state, path, against="model class")
    net.eval().to(dev)

    def fn(x: torch.Tensor, t: int) -> torch.Tensor:
        out = net(x, torch.full((x.shape[0],), int(t), dtype=torch.long, device=x.device))
        return _check_output(out, x, spec)

    return EpsModel(fn, f"{cls.__name__} from {path.name} ({where})", None, None, net, dev)


# ---------------------------------------------------------------- a diffusers UNet2DModel folder

SCHEDULES = {"linear": "linear", "scaled_linear": "scaled_linear", "squaredcos_cap_v2": "cosine"}


def _scheduler_config(folder: Path) -> dict | None:
    """The training schedule from a scheduler_config.json beside the UNet (hub layouts), if any."""
    for f in (folder / "scheduler_config.json", folder.parent / "scheduler" / "scheduler_config.json"):
        if f.is_file():
            c = read_json(f, "scheduler config")
            if not isinstance(c, dict):
                raise DifflabError(f"{f}: expected a JSON object")
            if c.get("prediction_type", "epsilon") != "epsilon":
                raise DifflabError(f"{f}: prediction_type {c['prediction_type']!r}; only epsilon models work")
            kind = c.get("beta_schedule", "linear")
            if kind not in SCHEDULES:
                raise DifflabError(f"{f}: beta_schedule {kind!r} is not supported ({', '.join(SCHEDULES)})")
            return {"kind": SCHEDULES[kind], "num_train_timesteps": c.get("num_train_timesteps", 1000),
                    "beta_start": c.get("beta_start", 1e-4), "beta_end": c.get("beta_end", 2e-2)}
    return None


def load_diffusers_unet(folder, device: str = "auto") -> EpsModel:
    """A `UNet2DModel.save_pretrained` folder (config.json + weights), or a pipeline folder with unet/,
    on `device`."""
    dev = resolve_device(device)
    folder = Path(folder)
    if (folder / "unet" / "config.json").is_file():
        folder = folder / "unet"
    if not (folder / "config.json").is_file():
        raise DifflabError(f"{folder}: model file not found (no config.json: not a diffusers model folder)")
    config = read_json(folder / "config.json", "model config")
    if not isinstance(config, dict):
        raise DifflabError(f"{folder / 'config.json'}: expected a JSON object")
    if config.get("_class_name", "UNet2DModel") != "UNet2DModel":
        raise DifflabError(f"{folder}: a {config['_class_name']}, but only UNet2DModel (unconditional) works")
    if config.get("num_class_embeds") or config.get("class_embed_type"):
        raise DifflabError(f"{folder}: class-conditional UNet2DModel is not supported")
    try:
        from diffusers import UNet2DModel
    except ImportError:
        raise DifflabError("loading a diffusers UNet needs diffusers: pip install 'difflab[sd]'") from None
    try:
        net = UNet2DModel.from_pretrained(str(folder), local_files_only=True).eval().to(dev)
    except (OSError, ValueError, RuntimeError) as e:
        raise DifflabError(f"{folder}: cannot load the UNet2DModel ({str(e).splitlines()[0]})") from None
    size, C = net.config.sample_size, net.config.in_channels
    shape = None if size is None else (C, size, size) if isinstance(size, int) else (C, *tuple(size))

    def fn(x: torch.Tensor, t: int) -> torch.Tensor:
        out = net(x, torch.full((x.shape[0],), int(t), dtype=torch.long, device=x.device))
        return _check_output(out, x, str(folder))

    return EpsModel(fn, f"diffusers UNet2DModel {folder.name}", shape, _scheduler_config(folder), net, dev)
