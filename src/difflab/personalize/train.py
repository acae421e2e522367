"""Textual inversion: learn the input-embedding rows of new tokens; everything else stays frozen.

Loss: the usual noise-prediction MSE of SD on the concept photos, captioned by templates that contain
the new token. Gradients reach only the text encoder's embedding matrix; AdamW updates that matrix,
and after every step all rows except the new ones are copied back from a saved copy, because weight
decay (and Adam's zero-gradient moments) would otherwise move them: the rest of the vocabulary is
bit-identical to the base model at every step.

CPU savings: the photos (and their mirror images) are encoded by the VAE once; each step then draws
a latent from the stored Gaussian (mean + std * noise), which is what encoding every step would do.

Files in OUT: learned_embeds.safetensors (diffusers format), checkpoint.safetensors (resumable:
vectors, Adam moments of the new rows, generator state), config.json, validation/step_XXXXXX.png.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from difflab.errors import DifflabError
from difflab.io import IMAGE_SUFFIXES, atomic_path, image_files, load_checkpoint, save_checkpoint
from difflab.personalize import embeddings as E
from difflab.personalize.config import TrainConfig
from difflab.personalize.templates import TEMPLATES

KIND = "difflab-textual-inversion"


def load_concept_images(folder, resolution: int) -> list[np.ndarray]:
    """All images in `folder`, centre-cropped to a square and resized -> list of (R, R, 3) uint8."""
    from PIL import Image

    from difflab.io import load_image

    folder = Path(folder)
    if not folder.is_dir():
        raise DifflabError(f"{folder}: concept image folder not found")
    paths = image_files(folder)
    if not paths:
        raise DifflabError(f"{folder}: no images ({', '.join(IMAGE_SUFFIXES)}) in the concept folder")
    out = []
    for p in paths:
        a = load_image(p)
        h, w = a.shape[:2]
        s = min(h, w)
        a = a[(h - s) // 2:(h - s) // 2 + s, (w - s) // 2:(w - s) // 2 + s]
        out.append(np.asarray(Image.fromarray(a).resize((resolution, resolution), Image.BICUBIC)))
    return out


def init_vectors(tokenizer, text_encoder, init_word: str, n: int) -> torch.Tensor:
    """(n, dim) start vectors: the init word's token embedding(s), repeated if it is one token."""
    ids = tokenizer(init_word, add_special_tokens=False).input_ids
    if not ids or E.TOKEN_RE.search(init_word):
        raise DifflabError(f"--init-word {init_word!r}: must be ordinary text the tokenizer knows")
    if len(ids) != 1 and len(ids) != n:
        raise DifflabError(f"--init-word {init_word!r} is {len(ids)} tokens: use a one-token word or "
                           f"--vectors {len(ids)}")
    weight = text_encoder.get_input_embeddings().weight.detach().float().cpu()
    return weight[ids].repeat(n // len(ids), 1).clone()


class EmbeddingTrainer:
    """Owns the pipeline components, the new rows and the optimizer; `train_step()` does one update.

    images: list of (R, R, 3) uint8 photos with R == cfg.resolution.
    """

    def __init__(self, pipe, images: list[np.ndarray], cfg: TrainConfig):
        from diffusers import DDPMScheduler

        cfg.check()
        self.pipe, self.cfg = pipe, cfg
        self.tok, self.te, self.unet, self.vae = pipe.tokenizer, pipe.text_encoder, pipe.unet, pipe.vae
        self.device = self.unet.device
        self.noise_sched = DDPMScheduler.from_config(pipe.scheduler.config)
        self.te.float()  # the trainable rows live here: always float32, even when the UNet is float16
        start = init_vectors(self.tok, self.te, cfg.init_word, cfg.vectors)
        self.ids = E.add_concepts(self.tok, self.te, {cfg.token: start})[cfg.token]
        self.n_old = min(self.ids)
        # add_concepts appends, so the new rows are the last ones: the frozen part is one slice
        if self.ids != list(range(self.n_old, len(self.tok))):
            raise DifflabError("new token rows are not the last rows of the embedding matrix")
        self.weight = self.te.get_input_embeddings().weight
        self.frozen_rows = self.weight.detach()[:self.n_old].clone()
        for m in (self.unet, self.vae, self.te):
            m.requires_grad_(False)
            m.eval()  # CLIP and SD have no dropout in use; eval keeps the steps deterministic
        self.weight.requires_grad_(True)
        self.opt = torch.optim.AdamW([self.weight], lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.gen = torch.Generator().manual_seed(cfg.seed)  # on CPU: same draws whatever the device
        self.word = " ".join(E.vector_tokens(cfg.token, cfg.vectors))
        self.templates = TEMPLATES[cfg.what]
        self.mean, self.std = self._encode(images)
        self.step = 0

    @torch.no_grad()
    def _encode(self, images):
        """VAE posterior of every photo and its mirror: mean, std each (n, 2, 4, R/8, R/8)."""
        means, stds = [], []
        for a in images:
            x = torch.from_numpy(np.array(a)).permute(2, 0, 1).float().div(127.5).sub(1)[None]
            x = torch.cat([x, x.flip(-1)]).to(self.device, self.vae.dtype)
            dist = self.vae.encode(x).latent_dist
            means.append(dist.mean.float().cpu())
            stds.append(dist.std.float().cpu())
        return torch.stack(means), torch.stack(stds)

    def _micro_batch_loss(self) -> torch.Tensor:
        cfg, g, b = self.cfg, self.gen, self.cfg.batch_size
        idx = torch.randint(len(self.mean), (b,), generator=g)
        flip = (torch.rand(b, generator=g) < cfg.flip).long()
        z = self.mean[idx, flip] + self.std[idx, flip] * torch.randn(self.mean[idx, 0].shape, generator=g)
        z = z * self.vae.config.scaling_factor
        noise = torch.randn(z.shape, generator=g)
        t = torch.randint(0, self.noise_sched.config.num_train_timesteps, (b,), generator=g)
        picks = torch.randint(len(self.templates), (b,), generator=g).tolist()
        prompts = [self.templates[i].format(self.word) for i in picks]
        noisy = self.noise_sched.add_noise(z, noise, t)
        if self.noise_sched.config.prediction_type == "v_prediction":
            target = self.noise_sched.get_velocity(z, noise, t)
        else:
            target = noise
        ids = self.tok(prompts, padding="max_length", max_length=self.tok.model_max_length, truncation=True,
                       return_tensors="pt").input_ids.to(self.device)
        hidden = self.te(ids)[0].to(self.unet.dtype)
        dt = self.unet.dtype
        pred = self.unet(noisy.to(self.device, dt), t.to(self.device), hidden).sample
        return F.mse_loss(pred.float(), target.to(self.device))

    def train_step(self) -> float:
        """One optimizer update over grad_accum micro-batches; returns the mean loss."""
        total = 0.0
        for _ in range(self.cfg.grad_accum):
            loss = self._micro_batch_loss() / self.cfg.grad_accum
            loss.backward()
            total += loss.item()
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        with torch.no_grad():
            self.weight[:self.n_old] = self.frozen_rows  # undo weight decay on every other row
        self.step += 1
        return total

    def vectors(self) -> torch.Tensor:
        return self.weight.detach()[self.ids].float().cpu().clone()

    # -- checkpoints ---------------------------------------------------------------------------------------
    def save(self, path) -> None:
        st = self.opt.state.get(self.weight, {})
        zeros = torch.zeros_like(self.vectors())
        tensors = {"vectors": self.vectors(), "rng": self.gen.get_state(),
                   "exp_avg": st["exp_avg"][self.ids].cpu() if st else zeros,
                   "exp_avg_sq": st["exp_avg_sq"][self.ids].cpu() if st else zeros}
        meta = {"kind": KIND, "step": self.step, "adam_step": float(st["step"]) if st else 0.0,
                "config": asdict(self.cfg)}
        save_checkpoint(path, tensors, meta)

    def resume(self, path) -> None:
        """Continue from a checkpoint: same rows, Adam moments and random stream as the saved run.

        Adam is element-wise, so the moments of the new rows are all it needs; the other rows are reset
        to the base model after every step anyway.
        """
        tensors, meta = load_checkpoint(path)
        if meta.get("kind") != KIND:
            raise DifflabError(f"{path}: not a textual-inversion checkpoint")
        saved = {k: meta["config"].get(k) for k in ("token", "vectors", "what", "seed", "batch_size")}
        if saved != {k: getattr(self.cfg, k) for k in saved}:
            raise DifflabError(f"{path}: saved with other settings {saved}")
        with torch.no_grad():
            self.weight[self.ids] = tensors["vectors"].to(self.weight)
        if meta["adam_step"] > 0:
            st = {"step": torch.tensor(meta["adam_step"]), "exp_avg": torch.zeros_like(self.weight),
                  "exp_avg_sq": torch.zeros_like(self.weight)}
            st["exp_avg"][self.ids] = tensors["exp_avg"].to(self.weight)
            st["exp_avg_sq"][self.ids] = tensors["exp_avg_sq"].to(self.weight)
            self.opt.state[self.weight] = st
        self.gen.set_state(tensors["rng"])
        self.step = int(meta["step"])

    @torch.no_grad()
    def validation_images(self, n: int, steps: int, seed: int = 0):
        """n images of "a photo of <token>" (PIL), drawn with a fixed seed so steps are comparable."""
        template = self.templates[0]
        gens = [torch.Generator().manual_seed(seed + k) for k in range(n)]
        res = self.cfg.resolution
        # on CUDA the UNet is float16 but the text encoder float32: autocast reconciles the two
        with torch.autocast("cuda", enabled=self.device.type == "cuda"):
            return self.pipe([template.format(self.cfg.token)] * n, num_inference_steps=steps, height=res,
                             width=res, generator=gens).images


def train(model: str, images_dir, out_dir, cfg: TrainConfig, resume: str | None = None,
          overwrite: bool = False, device: str = "auto", original_config=None, config_dir=None,
          progress: bool = True):
    """Train one concept; returns the trainer. See the module docstring for the files written."""
    from difflab.device import resolve_device
    from difflab.io import inplace_output_dir

    cfg.check()
    resolve_device(device)  # a --device that does not exist fails before the output folder is made
    out = Path(out_dir)
    path = None
    if resume:
        path = out / "checkpoint.safetensors" if resume == "latest" else Path(resume)
        if not path.is_file():
            raise DifflabError(f"{path}: no checkpoint to resume from")
    # in place, not staged: the checkpoints must survive a crash for --resume; locked against a second run
    with inplace_output_dir(out, overwrite, resume=bool(resume)):
        return _train(model, images_dir, out, cfg, path, device, original_config, config_dir, progress)


def _train(model: str, images_dir, out: Path, cfg: TrainConfig, resume_from: Path | None, device: str,
           original_config, config_dir, progress: bool):
    from difflab.models.sd import load_sd
    from difflab.viz import grid, save_image

    ckpt = out / "checkpoint.safetensors"
    images = load_concept_images(images_dir, cfg.resolution)
    pipe = load_sd(model, original_config=original_config, config_dir=config_dir, device=device)
    trainer = EmbeddingTrainer(pipe, images, cfg)
    if resume_from is not None:
        trainer.resume(resume_from)
    with atomic_path(out / "config.json") as tmp:
        tmp.write_text(json.dumps({"model": str(model), "images": str(images_dir), **asdict(cfg)}, indent=2))
    bar = tqdm(total=cfg.steps, initial=trainer.step, desc=f"train {cfg.token}", disable=not progress)
    avg, t0 = None, time.time()
    while trainer.step < cfg.steps:
        loss = trainer.train_step()
        if not math.isfinite(loss):  # the embedding is garbage from here on: stop before saving it
            raise DifflabError(f"training stopped: the loss became {loss} at step {trainer.step} (try a lower "
                               "--lr); nothing was written after the last checkpoint")
        avg = loss if avg is None else 0.95 * avg + 0.05 * loss
        bar.update(1)
        bar.set_postfix(loss=f"{avg:.4f}")
        s = trainer.step
        if cfg.validate_every and (s % cfg.validate_every == 0 or s == cfg.steps):
            ims = trainer.validation_images(cfg.num_validation, cfg.validation_steps)
            save_image(grid([np.asarray(im) for im in ims], ncols=len(ims), title=f"step {s}"),
                       out / "validation" / f"step_{s:06d}.png")
        if s % cfg.checkpoint_every == 0 or s == cfg.steps:
            trainer.save(ckpt)
    bar.close()
    meta = {"init_word": cfg.init_word, "steps": trainer.step, "what": cfg.what, "model": str(model),
            "seconds": round(time.time() - t0, 2)}
    E.save_embeds(out / "learned_embeds.safetensors", {cfg.token: trainer.vectors()}, meta)
    return trainer
