"""Load Stable Diffusion v1.x, offline, as a diffusers `StableDiffusionPipeline`.

Two sources:
- a diffusers folder (`model_index.json` + unet/ vae/ text_encoder/ tokenizer/ scheduler/);
- an original single-file checkpoint (`sd-v1-4.ckpt` / `.safetensors`) plus its `v1-inference.yaml`.
  diffusers' `from_single_file` builds the UNet and VAE from the yaml, but takes the text encoder's
  config, the tokenizer and the scheduler from a diffusers-layout *config* folder, which it would
  otherwise download. `write_sd_v1_config` writes that folder from known SD-v1 numbers and the CLIP
  vocabulary in the open-clip wheel, so nothing is fetched (see docs/textual_inversion.md).

Device/dtype policy: float32 on CPU; float16 only on CUDA (the trainer then moves the text encoder,
which holds the trainable rows, back to float32).
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import torch

from difflab.errors import DifflabError
from difflab.io import atomic_path

# SD v1.x scheduler numbers (those of runwayml/stable-diffusion-v1-5's scheduler_config.json)
SD_SCHEDULER = dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012,
                    beta_schedule="scaled_linear", skip_prk_steps=True, steps_offset=1,
                    set_alpha_to_one=False, clip_sample=False)
# CLIP ViT-L/14's text tower, as in openai/clip-vit-large-patch14 (SD v1's text encoder)
SD_V1_TEXT = dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
                  max_position_embeddings=77, vocab_size=49408, projection_dim=768, hidden_act="quick_gelu",
                  bos_token_id=49406, eos_token_id=49407, pad_token_id=1, architectures=["CLIPTextModel"],
                  model_type="clip_text_model")
MODEL_INDEX = {"_class_name": "StableDiffusionPipeline", "feature_extractor": [None, None],
               "safety_checker": [None, None], "requires_safety_checker": False,
               "scheduler": ["diffusers", "PNDMScheduler"], "text_encoder": ["transformers", "CLIPTextModel"],
               "tokenizer": ["transformers", "CLIPTokenizer"], "unet": ["diffusers", "UNet2DConditionModel"],
               "vae": ["diffusers", "AutoencoderKL"]}


def pick_device(device: str = "auto") -> torch.device:
    """'auto' -> cuda when available, else cpu: difflab.device.resolve_device, the helper every job uses
    (its one-line errors name the devices that exist)."""
    from difflab.device import resolve_device

    return resolve_device(device)


def write_sd_v1_config(out_dir) -> Path:
    """Write the config folder `from_single_file` needs for an SD v1 checkpoint (no weights)."""
    from difflab.models.clip_vocab import write_clip_tokenizer

    out = Path(out_dir)
    files = {"model_index.json": MODEL_INDEX, "text_encoder/config.json": SD_V1_TEXT,
             "scheduler/scheduler_config.json": dict(SD_SCHEDULER, _class_name="PNDMScheduler")}
    for name, data in files.items():
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(out / name) as tmp:
            tmp.write_text(json.dumps(data, indent=2))
    write_clip_tokenizer(out / "tokenizer")
    return out


def load_sd(model, original_config=None, config_dir=None, device: str = "auto", fp16: bool | None = None,
            scheduler: str = "ddim"):
    """Load SD from a diffusers folder, or from a single-file checkpoint + `original_config` yaml.

    config_dir: diffusers-layout config folder for the single-file route (default: SD v1's, written
    to a temporary folder by `write_sd_v1_config`). fp16: None = only on CUDA. scheduler: "ddim"
    (deterministic, the default for generation), or "default" (what the model folder ships).
    Returns a `StableDiffusionPipeline` on `device` with the safety checker removed.
    """
    import diffusers
    import transformers
    from diffusers import DDIMScheduler, StableDiffusionPipeline

    # our own bars report progress; the per-component loading bars and warnings are noise here
    diffusers.utils.logging.set_verbosity_error()
    diffusers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    dev = pick_device(device)
    fp16 = dev.type == "cuda" if fp16 is None else fp16
    if fp16 and dev.type != "cuda":
        raise DifflabError("float16 is only supported on CUDA here; CPU runs in float32")
    path = Path(model)
    common = dict(safety_checker=None, requires_safety_checker=False, local_files_only=True)
    try:
        if path.is_dir():
            if not (path / "model_index.json").is_file():
                raise DifflabError(f"{path}: not a diffusers model folder (no model_index.json)")
            pipe = StableDiffusionPipeline.from_pretrained(path, **common)
        elif path.is_file():
            if original_config is None:
                raise DifflabError(f"{path}: a single-file checkpoint needs "
                                   "--original-config v1-inference.yaml")
            if not Path(original_config).is_file():
                raise DifflabError(f"{original_config}: original config yaml not found")
            with tempfile.TemporaryDirectory(prefix="difflab_sd_config_") as tmp:
                # configs are only read while loading, so a temporary folder is enough
                config_dir = config_dir or write_sd_v1_config(tmp)
                pipe = StableDiffusionPipeline.from_single_file(
                    str(path), original_config=str(original_config), config=str(config_dir), **common)
        else:
            raise DifflabError(f"{path}: model not found (expected a diffusers folder or a .ckpt file)")
    except (OSError, ValueError, KeyError) as e:
        raise DifflabError(f"{path}: cannot load Stable Diffusion ({type(e).__name__}: {e})") from None
    if scheduler == "ddim":
        pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
    elif scheduler != "default":
        raise DifflabError(f"unknown scheduler {scheduler!r} (use ddim or default)")
    pipe.set_progress_bar_config(disable=True)
    pipe.to(dev, torch.float16 if fp16 else torch.float32)
    return pipe
