"""Learned-embedding files and adding their tokens to a tokenizer + CLIP text encoder.

Formats (one concept per token; a token may own N vectors):
- diffusers: `learned_embeds.safetensors` (or pickled `.bin`) holding `{token: Tensor[N, dim]}`.
- Automatic1111: a pickled `.pt` dict `{"string_to_param": {"*": Tensor[N, dim]}, "name": token,
  "string_to_token": {"*": 265}, "step": ...}`, or a `.safetensors` with one key `emb_params`
  (A1111 then uses the file name as the token).

Multi-vector tokens follow diffusers' naming so files load the same way there: vector 0 is the token
itself, vector i > 0 is the added token `f"{token}_{i}"`, and a prompt's `<tok>` is expanded to
`<tok> <tok>_1 ... <tok>_{N-1}` before tokenising (what `pipe.maybe_convert_prompt` does).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch

from difflab.errors import DifflabError
from difflab.io import atomic_path, load_torch_file

# what looks like a placeholder token in a prompt: <anything without spaces or angle brackets>
TOKEN_RE = re.compile(r"<[^<>\s]+>")


def _as_matrix(value, where: str) -> torch.Tensor:
    if not isinstance(value, torch.Tensor) or value.ndim not in (1, 2) or value.numel() == 0:
        raise DifflabError(f"{where}: embedding must be a non-empty tensor of shape (N, dim) or (dim,)")
    if not value.is_floating_point():  # an integer embedding is a broken file, not something to cast
        raise DifflabError(f"{where}: embedding has dtype {str(value.dtype).replace('torch.', '')}, expected float")
    value = value.detach().float().cpu()
    if not bool(torch.isfinite(value).all()):
        raise DifflabError(f"{where}: embedding holds NaN/inf values")
    return value[None] if value.ndim == 1 else value


def read_embeds(path) -> dict[str, torch.Tensor]:
    """Read a diffusers or A1111 embedding file -> {token: float32 Tensor[N, dim]}."""
    path = Path(path)
    if not path.is_file():
        raise DifflabError(f"{path}: embedding file not found")
    if path.suffix != ".safetensors":
        data = load_torch_file(path, "embedding file")
    else:
        from safetensors.torch import load_file

        try:
            data = load_file(str(path))
        except Exception as e:  # safetensors raises several types for a corrupt file
            raise DifflabError(f"{path}: not a readable embedding file ({type(e).__name__}: {e})") from None
    if isinstance(data, torch.Tensor):  # a bare tensor: the file name is the only name there is
        return {path.stem: _as_matrix(data, str(path))}
    if not isinstance(data, dict) or not data:
        raise DifflabError(f"{path}: expected a dict of embeddings, found {type(data).__name__}")
    if "string_to_param" in data:  # A1111 .pt
        params = data["string_to_param"]
        if not isinstance(params, dict) or "*" not in params:
            raise DifflabError(f"{path}: A1111 file without string_to_param['*']")
        return {str(data.get("name") or path.stem): _as_matrix(params["*"], str(path))}
    if set(data) == {"emb_params"}:  # A1111 .safetensors
        return {path.stem: _as_matrix(data["emb_params"], str(path))}
    return {str(k): _as_matrix(v, f"{path}[{str(k)!r}]") for k, v in data.items()}


def save_embeds(path, embeds: dict[str, torch.Tensor], meta: dict | None = None) -> Path:
    """Write `{token: Tensor[N, dim]}` as diffusers' `learned_embeds.safetensors` (atomically)."""
    from safetensors.torch import save_file

    tensors = {t: _as_matrix(v, f"{path}[{t!r}]").contiguous() for t, v in embeds.items()}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={"difflab": json.dumps(meta or {})})
    return Path(path)


def export_a1111(src, dst, token: str | None = None, step: int | None = None) -> Path:
    """Convert one token of a diffusers file `src` into an A1111 file `dst` (.pt, or .safetensors)."""
    embeds = read_embeds(src)
    if token is None:
        if len(embeds) != 1:
            raise DifflabError(f"{src}: holds {len(embeds)} tokens ({', '.join(embeds)}); "
                               "pick one with --token")
        token = next(iter(embeds))
    if token not in embeds:
        raise DifflabError(f"{src}: no token {token!r} (has {', '.join(embeds)})")
    dst = Path(dst)
    if dst.suffix == ".safetensors":
        from safetensors.torch import save_file

        with atomic_path(dst) as tmp:
            save_file({"emb_params": embeds[token].contiguous()}, str(tmp))
        return dst
    # 265 is the id of "*" in SD1's CLIP vocabulary: A1111 writes it but never reads it back
    data = {"string_to_token": {"*": 265}, "string_to_param": {"*": embeds[token]}, "name": token,
            "step": step, "sd_checkpoint": None, "sd_checkpoint_name": None}
    with atomic_path(dst) as tmp:
        torch.save(data, tmp)
    return dst


def import_a1111(src, dst, token: str | None = None) -> Path:
    """Convert an A1111 file `src` into a diffusers `learned_embeds.safetensors` at `dst`."""
    embeds = read_embeds(src)
    if len(embeds) != 1:
        raise DifflabError(f"{src}: an A1111 file holds exactly one embedding, found {len(embeds)}")
    (name, vectors), = embeds.items()
    return save_embeds(dst, {token or name: vectors}, {"imported_from": Path(src).name})


def vector_tokens(token: str, n: int) -> list[str]:
    """The added-token names of an N-vector concept: [token, token_1, ..., token_{N-1}] (diffusers')."""
    return [token] + [f"{token}_{i}" for i in range(1, n)]


def check_new_token(tokenizer, token: str) -> None:
    """Refuse names that cannot become a new token: empty, with spaces, or already in the vocabulary."""
    if not token or any(c.isspace() for c in token):
        raise DifflabError(f"token {token!r}: must be one word without spaces, e.g. <my-dog>")
    if token != token.lower():  # CLIP lower-cases prompts: "<Dog>" could never be typed back
        raise DifflabError(f"token {token!r}: must be lower-case, e.g. {token.lower()!r} "
                           "(rename a loaded file's token with `difflab ti import-a1111 --token`)")
    if token in tokenizer.get_vocab() or f"{token}_1" in tokenizer.get_vocab():
        raise DifflabError(f"token {token!r}: already in the tokenizer vocabulary; choose another name")


def add_concepts(tokenizer, text_encoder, embeds: dict[str, torch.Tensor]) -> dict[str, list[int]]:
    """Add each token's vectors as new rows of the text encoder's input embedding.

    embeds: {token: Tensor[N, dim]}, dim must equal the text encoder's hidden size. Returns
    {token: [row ids]}. Rows already present are untouched (resize keeps them bit-identical).
    """
    weight = text_encoder.get_input_embeddings().weight
    dim = weight.shape[1]
    for token, vectors in embeds.items():
        check_new_token(tokenizer, token)
        if vectors.shape[-1] != dim:
            raise DifflabError(f"token {token!r}: embedding dimension {vectors.shape[-1]} does not match "
                               f"the text encoder's {dim} (trained for another model?)")
    if len(tokenizer) != weight.shape[0]:
        # diffusers resizes to len(tokenizer) + new: rows would land on the wrong ids otherwise
        raise DifflabError(f"tokenizer has {len(tokenizer)} tokens but the text encoder "
                           f"{weight.shape[0]} rows")
    names = [name for token, v in embeds.items() for name in vector_tokens(token, v.shape[0])]
    tokenizer.add_tokens(names)
    # mean_resizing=False: the new rows are overwritten below, and the mean/covariance costs ~0.5 s
    text_encoder.resize_token_embeddings(len(tokenizer), mean_resizing=False)
    weight = text_encoder.get_input_embeddings().weight
    ids = {}
    with torch.no_grad():
        for token, vectors in embeds.items():
            ids[token] = tokenizer.convert_tokens_to_ids(vector_tokens(token, vectors.shape[0]))
            weight[ids[token]] = vectors.to(weight.device, weight.dtype)
    return ids


def learned_vectors(tokenizer, text_encoder, token: str) -> torch.Tensor:
    """The (N, dim) vectors of an added token, read back from the text encoder."""
    names, i = [token], 1
    while f"{token}_{i}" in tokenizer.get_vocab():
        names.append(f"{token}_{i}")
        i += 1
    ids = tokenizer.convert_tokens_to_ids(names)
    return text_encoder.get_input_embeddings().weight[ids].detach().float().cpu().clone()


def expand_prompt(prompt: str, tokenizer) -> str:
    """`<tok>` -> `<tok> <tok>_1 ... ` for multi-vector tokens; raise on unknown `<...>` tokens."""
    vocab = tokenizer.get_vocab()
    # CLIP lower-cases the prompt before matching tokens, and added tokens are lower-case (check_new_token)
    unknown = sorted({t for t in TOKEN_RE.findall(prompt) if t.lower() not in vocab})
    if unknown:
        raise DifflabError(f"prompt {prompt!r}: unknown token(s) {', '.join(unknown)} "
                           "(load the embedding file that defines them)")

    def repl(m):
        token, i = m.group(0).lower(), 1
        names = [token]
        while f"{token}_{i}" in vocab:
            names.append(f"{token}_{i}")
            i += 1
        return " ".join(names)

    return TOKEN_RE.sub(repl, prompt)
