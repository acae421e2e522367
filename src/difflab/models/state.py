"""State dicts in and out of networks: the one strict loader every model file goes through, and the
reader of a user's weights file (safetensors or a torch pickle, opened weights-only).

A state dict maps parameter/buffer names to tensors of the network's own shapes, e.g.
'inp.weight' -> (64, 3, 3, 3) float32. Loading is all-or-nothing: a missing, extra or reshaped tensor,
integer weights where the network has float ones, or a NaN/inf parameter is refused with one line
naming the file, before `load_state_dict` touches the network.
"""

from __future__ import annotations

from pathlib import Path

import torch

from difflab.errors import DifflabError
from difflab.io import check_finite, check_float_weights, load_torch_file

STATE_KEYS = ("ema", "state_dict", "model")  # wrappers we unwrap, EMA first: the weights meant for sampling
WRAPPER_PREFIXES = ("module.", "_orig_mod.")  # DataParallel/DDP, torch.compile


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The network inside module wrappers that keep it as `.model` (digits.generate's TimedModel and
    RowCounter): what carries the config and the metadata load_digit_model attaches."""
    while isinstance(getattr(model, "model", None), torch.nn.Module):
        model = model.model
    return model


def strip_wrapper_prefixes(state: dict[str, torch.Tensor], own: set[str]) -> dict[str, torch.Tensor]:
    """Drop a wrapper prefix that every key of `state` carries and none of the network's keys `own` do.

    DataParallel/DDP save 'module.x', torch.compile '_orig_mod.x'; a file of our own never has them, so
    for it this returns `state` unchanged."""
    for prefix in WRAPPER_PREFIXES:
        if all(k.startswith(prefix) for k in state) and not any(k.startswith(prefix) for k in own):
            state = {k[len(prefix):]: v for k, v in state.items()}
    return state


def _show(keys: list[str]) -> str:
    return f"{len(keys)} ({', '.join(keys[:4])}{', ...' if len(keys) > 4 else ''})"


def load_state_strict(net: torch.nn.Module, state: dict[str, torch.Tensor], path,
                      against: str = "model config") -> None:
    """Load `state` into `net` exactly, or raise one DifflabError line naming `path`.

    The line names the missing and unexpected keys (count and the first four) and the first shape
    mismatch; `against` says what the file was checked against ("model config" for our own files,
    whose config travels with the weights; "model class" for a user's class). Integer tensors where the
    network has float ones (load_state_dict would cast them silently into garbage) and NaN/inf in a
    parameter are refused too; buffers may hold -inf (an attention mask, say)."""
    own = net.state_dict()
    state = strip_wrapper_prefixes(state, set(own))
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong = [k for k in own if k in state and own[k].shape != state[k].shape]
    if missing or unexpected or wrong:
        parts = [f"missing keys {_show(missing)}"] if missing else []
        parts += [f"unexpected keys {_show(unexpected)}"] if unexpected else []
        if wrong:
            k = wrong[0]
            parts.append(f"shape mismatch at {k}: file {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
                         + (f" (+{len(wrong) - 1} more)" if len(wrong) > 1 else ""))
        raise DifflabError(f"{path}: weights do not match the {against}: {'; '.join(parts)}")
    check_float_weights(state, path, own)
    check_finite(state, path, names={k for k, _ in net.named_parameters()})
    net.load_state_dict(state)


def read_state_dict(path: Path, key: str | None = None) -> tuple[dict[str, torch.Tensor], str]:
    """A user's weights file -> (state dict, where in the file it came from, e.g. "key 'ema'").

    .safetensors: the whole file. Anything else: a torch pickle read weights-only (a weights file must
    not run code when read); a dict holding non-tensors is unwrapped at `key`, or else at the first of
    STATE_KEYS it has. Every way the file can be wrong is one DifflabError line naming it."""
    path = Path(path)
    if not path.is_file():
        raise DifflabError(f"{path}: weights file not found")
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path)), "safetensors"
        except (SafetensorError, OSError, ValueError) as e:
            raise DifflabError(f"{path}: not a readable safetensors file ({e})") from None
    obj = load_torch_file(path, "state dict")
    where = "top level"
    if isinstance(obj, dict) and key is not None:
        if key not in obj:
            raise DifflabError(f"{path}: no key {key!r} (keys: {', '.join(map(str, list(obj)[:10]))})")
        obj, where = obj[key], f"key {key!r}"
    elif isinstance(obj, dict) and not all(isinstance(v, torch.Tensor) for v in obj.values()):
        for k in STATE_KEYS:
            if isinstance(obj.get(k), dict):
                obj, where = obj[k], f"key {k!r}"
                break
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise DifflabError(f"{path}: {where} is not a state dict of tensors (expected a plain state "
                           f"dict or a dict with one of the keys {', '.join(STATE_KEYS)}; or pass "
                           "--weights-key)")
    return obj, where
