"""Save/load the digit diffusion model (EMA weights + config) as one safetensors file."""

from __future__ import annotations

from pathlib import Path

import torch

from difflab.errors import DifflabError
from difflab.io import check_float_weights, load_checkpoint, save_checkpoint
from difflab.models.unet import ConditionalUNet, UNetConfig
from difflab.schedule import NoiseSchedule

KIND = "difflab-digits-unet"
ASSETS = Path(__file__).resolve().parent.parent / "assets"
DEFAULT_MODEL = ASSETS / "digits_unet.safetensors"  # the teacher (CFG, 20 DDIM steps by default)
STUDENT_MODEL = ASSETS / "digits_student.safetensors"  # distilled from it: guidance input, 4 steps
SHIPPED = {"teacher": DEFAULT_MODEL, "student": STUDENT_MODEL}


def model_path(name) -> Path:
    """'teacher' / 'student' -> the shipped file; None -> the teacher; anything else is a path that must be a
    readable file (one-line error otherwise)."""
    if name is None:
        return DEFAULT_MODEL
    if str(name) in SHIPPED:
        return SHIPPED[str(name)]
    path = Path(name)
    if not path.is_file():
        raise DifflabError(f"--model {name}: neither 'teacher', 'student' nor a readable model file")
    return path


def save_digit_model(path, model: ConditionalUNet, schedule: NoiseSchedule, extra: dict | None = None):
    meta = {"kind": KIND, "unet": model.config.to_dict(),
            "schedule": {"kind": schedule.kind, "num_train_timesteps": schedule.num_train_timesteps,
                         "beta_start": schedule.beta_start, "beta_end": schedule.beta_end},
            **(extra or {})}
    save_checkpoint(path, model.state_dict(), meta)


def load_state_strict(model: torch.nn.Module, state: dict[str, torch.Tensor], path) -> None:
    """load_state_dict that reports a config mismatch as one line instead of a page of shapes."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong = [k for k in own if k in state and own[k].shape != state[k].shape]
    if missing or unexpected or wrong:
        detail = []
        if missing:
            detail.append(f"missing keys {missing[:3]}{'...' if len(missing) > 3 else ''}")
        if unexpected:
            detail.append(f"unexpected keys {unexpected[:3]}{'...' if len(unexpected) > 3 else ''}")
        if wrong:
            k = wrong[0]
            detail.append(f"shape mismatch at {k}: {tuple(state[k].shape)} vs {tuple(own[k].shape)}")
        raise DifflabError(f"{path}: weights do not match the model config ({'; '.join(detail)})")
    check_float_weights(state, path, own)  # integer weights would be cast silently into garbage
    model.load_state_dict(state)


def load_digit_model(path=None, prefix: str = "") -> tuple[ConditionalUNet, NoiseSchedule, dict]:
    """Load (model in eval mode, schedule, meta) from a file written by save_digit_model or the trainer
    (prefix 'ema.' picks the EMA weights out of a training checkpoint). `path` may also be 'teacher' or
    'student' (the shipped models). A distilled student gets `model.student`: what it was distilled for
    (steps, spacing, guidance_range, guide), which `digits generate` enforces."""
    path = model_path(path)
    tensors, meta = load_checkpoint(path)
    if meta.get("kind") not in (KIND, "difflab-digits-train"):
        raise DifflabError(f"{path}: not a difflab digit model (kind={meta.get('kind')!r})")
    if meta.get("kind") == "difflab-digits-train" and not prefix:
        prefix = "ema."
    state = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
    try:
        model = ConditionalUNet(UNetConfig.from_dict(meta["unet"]))
        schedule = NoiseSchedule(**meta["schedule"])
    except (KeyError, TypeError) as e:
        raise DifflabError(f"{path}: checkpoint config is incomplete or from another version ({e})") from None
    load_state_strict(model, state, path)
    if model.config.guidance_input:
        if not isinstance(meta.get("student"), dict):
            raise DifflabError(f"{path}: a guidance-input model without its 'student' metadata")
        model.student = dict(meta["student"])
    return model.eval(), schedule, meta
