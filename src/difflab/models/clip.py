"""`ClipScorer`: a transformers `CLIPModel` + tokenizer + image processor, loaded strictly offline.

Embeddings are L2-normalised float32 (N, D) tensors on the CPU. Scores follow CLIP's conventions:
image-text score = 100 x cosine (CLIP's logit scale at the end of training; "CLIP score"),
image-image score = 100 x cosine averaged over a reference set. Zero-shot logits use the model's own
learned scale exp(logit_scale), exactly as `CLIPModel(...).logits_per_image` does.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from tqdm.auto import tqdm

from difflab.errors import DifflabError

WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                "pytorch_model.bin.index.json")
HINT = ("pass --model a folder saved by transformers CLIPModel.save_pretrained (config.json + "
        "model.safetensors + tokenizer files), e.g. a local copy of openai/clip-vit-base-patch32")


def resolve_model_dir(path) -> Path:
    """A local folder as is; a Hub id ("org/name") from the local Hugging Face cache only, never the net."""
    folder = Path(path).expanduser()
    if folder.is_dir():
        return folder
    text = str(path)
    if text.count("/") == 1 and not text.startswith((".", "/", "~")):
        from huggingface_hub import snapshot_download

        try:  # local_files_only: a missing model must fail at once, not hang on a download
            return Path(snapshot_download(text, local_files_only=True))
        except Exception:  # the hub raises several types; all mean "not cached"
            pass
    raise DifflabError(f"clip.py: {path}: no such model folder or cached Hub model; {HINT}")


def check_model_dir(folder: Path) -> None:
    """Refuse a folder without a CLIP config, weights or tokenizer, naming what is missing."""
    if not (folder / "config.json").is_file():
        raise DifflabError(f"clip.py: {folder}: no config.json; {HINT}")
    if not any((folder / name).is_file() for name in WEIGHT_FILES):
        raise DifflabError(f"clip.py: {folder}: no weights ({' or '.join(WEIGHT_FILES[::2])}); {HINT}")
    has_bpe = (folder / "vocab.json").is_file() and (folder / "merges.txt").is_file()
    if not (has_bpe or (folder / "tokenizer.json").is_file()):
        raise DifflabError(f"clip.py: {folder}: no tokenizer (vocab.json + merges.txt); {HINT}")


class ClipScorer:
    """CLIP embeddings and scores, batched, under `torch.no_grad`.

    Images are PIL images of any size/mode (converted to RGB, resized and centre-cropped by the model's
    image processor). Texts are truncated to CLIP's 77 tokens.
    """

    def __init__(self, model, tokenizer, image_processor, device="auto", batch_size: int = 32):
        from difflab.device import resolve_device

        self.device = resolve_device(device)  # "auto" too; a device that does not exist: one line
        self.model = model.eval().to(self.device)
        self.tokenizer = tokenizer
        self.image_processor = image_processor
        self.batch_size = int(batch_size)

    @classmethod
    def from_pretrained(cls, path, device="auto", batch_size: int = 32) -> ClipScorer:
        """Load a CLIPModel folder (or a Hub id already in the local cache), offline, onto `device`."""
        from transformers import CLIPConfig, CLIPImageProcessorPil, CLIPModel, CLIPTokenizer
        from transformers.utils import logging as hf_logging

        from difflab.device import resolve_device

        device = resolve_device(device)  # a device that does not exist fails before the model loads

        folder = resolve_model_dir(path)
        check_model_dir(folder)
        try:
            config = CLIPConfig.from_pretrained(folder, local_files_only=True)
            if config.model_type != "clip":
                raise DifflabError(f"clip.py: {folder}: config.json is a {config.model_type!r} model, "
                                   f"not 'clip'; {HINT}")
            verbosity, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
            hf_logging.set_verbosity_error()  # silence the per-load weight-loading report and its bar
            hf_logging.disable_progress_bar()
            try:
                model = CLIPModel.from_pretrained(folder, local_files_only=True)
            finally:
                hf_logging.set_verbosity(verbosity)
                if bars:
                    hf_logging.enable_progress_bar()
            # a tokenizer built from vocab/merges files does not know CLIP's 77-token context by itself
            tokenizer = CLIPTokenizer.from_pretrained(
                folder, local_files_only=True, model_max_length=config.text_config.max_position_embeddings)
            if (folder / "preprocessor_config.json").is_file():
                processor = CLIPImageProcessorPil.from_pretrained(folder, local_files_only=True)
            else:  # CLIP's standard preprocessing at the model's resolution
                res = config.vision_config.image_size
                processor = CLIPImageProcessorPil(size={"shortest_edge": res},
                                                  crop_size={"height": res, "width": res})
        except DifflabError:
            raise
        except Exception as e:  # transformers raises OSError, ValueError, KeyError, ...
            msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise DifflabError(f"clip.py: {folder}: cannot load CLIP model ({msg}); {HINT}") from None
        return cls(model, tokenizer, processor, device=device, batch_size=batch_size)

    @property
    def logit_scale(self) -> float:
        """The model's learned multiplier exp(logit_scale) (100.0 for the released CLIP weights)."""
        return float(self.model.logit_scale.detach().exp())

    @property
    def dim(self) -> int:
        """D, the size of the joint embedding space."""
        return int(self.model.config.projection_dim)

    def pixel_values(self, images: Sequence) -> torch.Tensor:
        """PIL images -> (N, 3, R, R) normalised float32 pixels, as the model's processor prepares them."""
        if len(images) == 0:
            return torch.zeros(0, 3, self.model.config.vision_config.image_size,
                               self.model.config.vision_config.image_size)
        return self.image_processor(images=list(images), return_tensors="pt")["pixel_values"]

    @torch.no_grad()
    def embed_pixels(self, pixels: torch.Tensor) -> torch.Tensor:
        """(N, 3, R, R) processed pixels -> (N, D) L2-normalised image embeddings (one forward pass)."""
        feats = self.model.get_image_features(pixel_values=pixels.to(self.device)).pooler_output
        return torch.nn.functional.normalize(feats.float(), dim=-1).cpu()

    @torch.no_grad()
    def embed_images(self, images: Sequence, progress: bool = False) -> torch.Tensor:
        """list of N PIL images -> (N, D) float32, L2-normalised, in batches of `batch_size`."""
        out = [torch.zeros(0, self.dim)]
        for i in tqdm(range(0, len(images), self.batch_size), desc="CLIP images", disable=not progress):
            out.append(self.embed_pixels(self.pixel_values(images[i:i + self.batch_size])))
        return torch.cat(out)

    def tokenize(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        """Texts -> input_ids/attention_mask (N, L<=77), padded to the longest, truncated at 77."""
        return self.tokenizer(list(texts), padding=True, truncation=True, return_tensors="pt")

    @torch.no_grad()
    def embed_texts(self, texts: Sequence[str], progress: bool = False) -> torch.Tensor:
        """list of N strings -> (N, D) float32, L2-normalised, in batches of `batch_size`."""
        if isinstance(texts, str):
            raise DifflabError("clip.py: embed_texts takes a list of strings, not one string")
        out = [torch.zeros(0, self.dim)]
        for i in tqdm(range(0, len(texts), self.batch_size), desc="CLIP texts", disable=not progress):
            tokens = {k: v.to(self.device) for k, v in self.tokenize(texts[i:i + self.batch_size]).items()}
            feats = self.model.get_text_features(**tokens).pooler_output
            out.append(torch.nn.functional.normalize(feats.float(), dim=-1).cpu())
        return torch.cat(out)

    def _embed(self, images) -> torch.Tensor:
        """PIL images, or already computed (N, D) normalised embeddings passed through."""
        return images.float() if isinstance(images, torch.Tensor) else self.embed_images(images)

    def image_image_score(self, images, refs) -> torch.Tensor:
        """(N,) mean over the M references of 100 x cos(image i, ref j); range [-100, 100].

        `images`/`refs`: lists of PIL images or (N, D)/(M, D) normalised embeddings from `embed_images`.
        """
        a, b = self._embed(images), self._embed(refs)
        if len(b) == 0:
            raise DifflabError("clip.py: image_image_score needs at least one reference image")
        return 100.0 * a @ b.mean(dim=0)  # mean of dot products == dot product with the mean

    def image_text_score(self, images, texts: Sequence[str]) -> torch.Tensor:
        """(N,) 100 x cos(image i, text i) (CLIP score); range [-100, 100]. Needs len(images) == len(texts)."""
        if isinstance(texts, str) or len(images) != len(texts):
            raise DifflabError("clip.py: image_text_score needs one text per image "
                               f"(got {len(images)} images, {1 if isinstance(texts, str) else len(texts)} texts)")
        return 100.0 * (self._embed(images) * self.embed_texts(texts)).sum(dim=-1)
