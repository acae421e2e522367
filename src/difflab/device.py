"""One device helper for every job: which device a network runs on, its autocast dtype, and where random
numbers come from.

- `resolve_device("auto" | "cpu" | "cuda" | "cuda:N")`: "auto" is the first CUDA device when there is
  one (or $DIFFLAB_DEVICE when set: the test suite pins it to "cpu"), else the CPU. A device that does not
  exist is a one-line DifflabError naming the devices that do.
- `autocast(device, enabled)`: bf16 on the CPU (what difflab always used there: ~1.5x faster); on CUDA
  bf16 when the card supports it (Ampere and later), else fp16. fp16 has a narrow exponent range, so a
  trainer that may run in fp16 uses `grad_scaler(device, enabled)` too.
- Random numbers: every draw difflab makes goes through a CPU `torch.Generator` and the result is moved
  to the device (`randn`). So the same seed gives the same starting noise on every device; the images
  then differ only by the device's own arithmetic (same seed -> same images on the same device).
- Distributed runs: `distributed_backend(device)` (NCCL for CUDA, gloo for the CPU) and `rank_device`
  (process LOCAL_RANK of a node takes cuda:LOCAL_RANK).
"""

from __future__ import annotations

import os
import re

import torch

from difflab.errors import DifflabError

DEVICE_ENV = "DIFFLAB_DEVICE"  # what "auto" means when set (e.g. "cpu" to keep a GPU machine's tests on CPU)
DEVICE_HELP = "auto (CUDA when present), cpu, cuda or cuda:N"
_SPEC = re.compile(r"^(auto|cpu|cuda)(?::(\d+))?$")


def add_device_arg(parser, default: str = "auto") -> None:
    """The one --device flag of every command that runs a network (resolved by `resolve_device`)."""
    parser.add_argument("--device", default=default, help=f"{DEVICE_HELP} (default: %(default)s)")


def cuda_count() -> int:
    """Number of usable CUDA devices (0 without CUDA or without a CUDA build of torch)."""
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def available_devices() -> list[str]:
    """Every device a --device may name on this machine, e.g. ['cpu', 'cuda:0', 'cuda:1']."""
    return ["cpu"] + [f"cuda:{i}" for i in range(cuda_count())]


def _refuse(spec, why: str) -> DifflabError:
    return DifflabError(f"--device {spec}: {why} (devices here: {', '.join(available_devices())})")


def resolve_device(spec: str | torch.device | None = "auto") -> torch.device:
    """'auto' | 'cpu' | 'cuda' | 'cuda:N' (or a torch.device; None means 'auto') -> torch.device.

    'cuda' is the current CUDA device (cuda:0 unless the process chose another), always with its index,
    so results compare equal to `tensor.device`. Unknown strings, 'cuda' without CUDA and an index
    beyond the last device raise a one-line DifflabError that lists the devices that exist.
    """
    if isinstance(spec, torch.device):
        spec = str(spec)
    text = "auto" if spec is None else str(spec).strip().lower()
    if text == "auto" and os.environ.get(DEVICE_ENV):
        return resolve_device(os.environ[DEVICE_ENV])
    m = _SPEC.match(text)
    if m is None or (m[1] != "cuda" and m[2] is not None):
        raise _refuse(spec, "unknown device; use auto, cpu, cuda or cuda:N")
    kind, index = m[1], m[2]
    if kind == "auto":
        kind = "cuda" if cuda_count() else "cpu"
    if kind == "cpu":
        return torch.device("cpu")
    n = cuda_count()
    if n == 0:
        raise _refuse(spec, "CUDA is not available on this machine")
    i = torch.cuda.current_device() if index is None else int(index)
    if i >= n:
        raise _refuse(spec, f"this machine has {n} CUDA device{'s' if n > 1 else ''}")
    return torch.device("cuda", i)


def card_name(spec) -> str | None:
    """The name of the CUDA card a --device spec ("auto" too) resolves to, e.g. 'NVIDIA H200'; None for the CPU.
    What run records and the report print, so that they say a card did the work, not only that one was there."""
    device = resolve_device(spec)
    return torch.cuda.get_device_name(device) if device.type == "cuda" else None


def check_device(spec) -> None:
    """Refuse a bad --device before any work (configs call this when they are built)."""
    resolve_device(spec)


def autocast_dtype(device: torch.device | str) -> torch.dtype:
    """bf16 on the CPU; on CUDA bf16 if the card supports it, else fp16 (pre-Ampere cards: T4, V100)."""
    device = resolve_device(device)
    if device.type != "cuda":
        return torch.bfloat16
    with torch.cuda.device(device):
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def autocast(device: torch.device | str, enabled: bool = True):
    """`torch.autocast` for `device` in its `autocast_dtype`; a no-op context when not enabled.

    On the CPU this is exactly `torch.autocast("cpu", dtype=torch.bfloat16, enabled=enabled)`, the call
    every job made before devices existed, so CPU results are unchanged bit for bit.
    """
    device = resolve_device(device)
    dtype = autocast_dtype(device) if enabled else torch.bfloat16
    return torch.autocast(device.type, dtype=dtype, enabled=enabled)


def needs_grad_scaler(device: torch.device | str, autocast_enabled: bool) -> bool:
    """True for fp16 autocast only: fp16 gradients underflow without loss scaling; bf16 and fp32 keep
    fp32's exponent range and need none."""
    return bool(autocast_enabled) and autocast_dtype(device) == torch.float16


def grad_scaler(device: torch.device | str, autocast_enabled: bool) -> torch.amp.GradScaler:
    """A GradScaler active only when `needs_grad_scaler`; a disabled one passes loss, unscale_ and step
    straight through (so CPU training is unchanged bit for bit)."""
    device = resolve_device(device)
    return torch.amp.GradScaler(device.type, enabled=needs_grad_scaler(device, autocast_enabled))


def scaled_step(loss: torch.Tensor, opt: torch.optim.Optimizer, scaler: torch.amp.GradScaler, params,
                grad_clip: float) -> None:
    """One optimiser step through a `grad_scaler` (the teacher's, the student's and a concept's training):
    backward of the scaled loss, unscale, clip the gradient norm of `params` to `grad_clip` (0: no
    clipping), step (skipped by an active scaler when the gradients overflowed), update the scale. A
    disabled scaler (CPU, bf16, fp32) passes everything through."""
    opt.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    scaler.unscale_(opt)  # clip the true gradients, not the fp16-scaled ones
    if grad_clip:
        torch.nn.utils.clip_grad_norm_(params, grad_clip)
    scaler.step(opt)
    scaler.update()


def sync(device: torch.device) -> None:
    """Wait for queued CUDA work (timings of asynchronous kernels would otherwise be launch times)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def cpu_generator(seed: int) -> torch.Generator:
    """A CPU generator seeded with `seed`: every difflab draw starts here, whatever the device."""
    return torch.Generator().manual_seed(int(seed))


SEED_STRIDE = 100_003  # prime; runs seeded s and s + 1 share no stream while each has under 100_003 streams


def stream_generator(seed: int, i: int) -> torch.Generator:
    """The CPU generator of stream `i` (a chunk, an image) of a run seeded `seed`: seeded
    `seed * 100_003 + i`. Streams are independent of batching, so chunk sizes never change the numbers.
    seed in [0, 2**32) (checks.check_seed) and i >= 0 keep the result within torch's 64-bit seeds."""
    return cpu_generator(seed * SEED_STRIDE + i)


def randn(shape, generator: torch.Generator | None, device: torch.device | str = "cpu",
          dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Standard normal noise of `shape` on `device`, drawn from `generator` on the generator's own device
    (a CPU generator: the same numbers on every device) and then moved. generator None: the global RNG
    of `device`. On the CPU this is exactly `torch.randn(shape, generator=generator, dtype=dtype)`."""
    device = torch.device(device)
    if generator is None or generator.device == device:
        return torch.randn(shape, generator=generator, dtype=dtype, device=device)
    return torch.randn(shape, generator=generator, dtype=dtype, device=generator.device).to(device)


def module_device(module) -> torch.device:
    """The device of a module's first parameter or buffer (CPU for a parameter-free callable)."""
    if isinstance(module, torch.nn.Module):
        for t in module.parameters():
            return t.device
        for t in module.buffers():
            return t.device
    return torch.device("cpu")


def move(module, device: torch.device):
    """module.to(device) for a Module (in place, returns it); anything else comes back unchanged."""
    return module.to(device) if isinstance(module, torch.nn.Module) else module


# -- distributed ---------------------------------------------------------------------------------------------

def distributed_backend(device: torch.device) -> str:
    """NCCL for CUDA (GPU-to-GPU all-reduce), gloo for the CPU (NCCL has no CPU tensors)."""
    return "nccl" if torch.device(device).type == "cuda" else "gloo"


def rank_device(spec: str | None, local_rank: int, local_world_size: int) -> torch.device:
    """The device of process `local_rank` (of `local_world_size` on its node, as torchrun sets them).

    With CUDA ('auto' on a GPU node, or 'cuda'), process r takes cuda:r: one GPU per process, the layout
    NCCL needs. An explicit 'cuda:N' is honoured only with one process per node (several processes on
    one GPU would make NCCL fail or hang). A node with fewer GPUs than processes is refused.
    """
    device = resolve_device(spec)
    if device.type != "cuda" or local_world_size == 1:  # one process on this node: the device named
        return device
    if spec is not None and ":" in str(spec):
        raise DifflabError(f"--device {spec} with {local_world_size} processes per node: give --device cuda "
                           "(each process then takes cuda:LOCAL_RANK)")
    n = cuda_count()
    if local_rank >= n:
        raise DifflabError(f"process LOCAL_RANK {local_rank} needs a GPU of its own but this node has {n} "
                           f"(devices here: {', '.join(available_devices())}); lower --nproc_per_node")
    return torch.device("cuda", local_rank)


def dist_env() -> tuple[int, int, int, int]:
    """(RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE) from torchrun's environment (1 process if unset)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", str(rank)))
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", str(world)))
    return rank, world, local_rank, local_world
