"""OpenAI's CLIP BPE vocabulary, converted into the files a `transformers.CLIPTokenizer` reads.

No tokenizer may be downloaded at run time, but the `open-clip-torch` wheel ships OpenAI's vocabulary as
`open_clip/bpe_simple_vocab_16e6.txt.gz` (the package itself cannot be imported here: it needs torchvision,
so we locate the file through importlib without importing it). The layout below is the one OpenAI's
`SimpleTokenizer` builds and Hugging Face's `openai/clip-vit-base-patch32` ships:

    ids 0..255        the 256 byte symbols (GPT-2's printable byte-to-unicode map)
    ids 256..511      the same symbols with the end-of-word marker `</w>`
    ids 512..49405    one token per merge, in merge order (48894 merges)
    49406, 49407      `<|startoftext|>`, `<|endoftext|>`
"""

from __future__ import annotations

import gzip
import importlib.util
import json
from functools import lru_cache
from pathlib import Path

from difflab.errors import DifflabError
from difflab.io import atomic_path

BPE_FILE = "bpe_simple_vocab_16e6.txt.gz"
N_MERGES = 48894  # 49408 tokens - 512 byte symbols - 2 special tokens
BOS, EOS = "<|startoftext|>", "<|endoftext|>"
MODEL_MAX_LENGTH = 77  # CLIP's text context; a CLIPTokenizer built from files does not know it otherwise


def clip_bpe_path() -> Path:
    """Path of OpenAI's BPE merges file inside the installed open-clip-torch wheel."""
    spec = importlib.util.find_spec("open_clip")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        path = Path(folder) / BPE_FILE
        if path.is_file():
            return path
    raise DifflabError(
        f"clip_vocab.py: CLIP vocabulary file {BPE_FILE} not found; install it with "
        "`pip install --no-deps open-clip-torch` (it only provides the vocabulary file)")


@lru_cache(maxsize=1)
def bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP map from each byte 0..255 to a printable unicode character (order defines ids 0..255)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) \
        + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:  # whitespace/control bytes get characters above 255, so BPE never sees them raw
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


def read_merges(max_merges: int | None = None) -> list[tuple[str, str]]:
    """The first `max_merges` (default all 48894) BPE merges, as (left, right) symbol pairs."""
    n = N_MERGES if max_merges is None else int(max_merges)
    if not 0 <= n <= N_MERGES:
        raise DifflabError(f"clip_vocab.py: max_merges must be in 0..{N_MERGES}, got {max_merges}")
    path = clip_bpe_path()
    try:
        lines = gzip.open(path, "rt", encoding="utf-8").read().split("\n")
    except (OSError, EOFError, UnicodeDecodeError) as e:
        raise DifflabError(f"clip_vocab.py: {path} is not a readable gzip text file ({e})") from None
    # line 0 is a "#version" header; OpenAI uses exactly the next 48894 lines and ignores the rest
    merges = [tuple(line.split()) for line in lines[1:1 + n]]
    if len(merges) != n or any(len(m) != 2 for m in merges):
        raise DifflabError(f"clip_vocab.py: {path} is truncated or malformed")
    return merges


def clip_vocab(merges: list[tuple[str, str]]) -> dict[str, int]:
    """Token -> id, in OpenAI's order: bytes, bytes + `</w>`, one token per merge, BOS, EOS."""
    symbols = list(bytes_to_unicode().values())
    tokens = symbols + [s + "</w>" for s in symbols] + ["".join(m) for m in merges] + [BOS, EOS]
    return {t: i for i, t in enumerate(tokens)}


def write_clip_tokenizer(out_dir, max_merges: int | None = None) -> Path:
    """Write vocab.json, merges.txt, tokenizer_config.json and special_tokens_map.json into `out_dir`.

    `transformers.CLIPTokenizer.from_pretrained(out_dir)` then tokenises exactly like OpenAI's CLIP
    (49408 tokens, BOS 49406, EOS 49407, pad = EOS, 77 positions). `max_merges` keeps only the first
    merges for a smaller vocabulary (512 + max_merges + 2 tokens; BOS/EOS ids move accordingly): text is
    then split into more, shorter tokens, which is fine for tests. Returns `out_dir`.
    """
    out = Path(out_dir)
    for name, text in _tokenizer_files(max_merges).items():
        with atomic_path(out / name) as tmp:
            tmp.write_text(text, encoding="utf-8")
    return out


@lru_cache(maxsize=4)
def _tokenizer_files(max_merges: int | None) -> dict[str, str]:
    """File name -> text; cached per process because reading and converting the vocabulary takes ~1 s."""
    merges = read_merges(max_merges)
    vocab = clip_vocab(merges)
    config = {
        "tokenizer_class": "CLIPTokenizer",
        "model_max_length": MODEL_MAX_LENGTH,
        "bos_token": BOS, "eos_token": EOS, "unk_token": EOS, "pad_token": EOS,
        "do_lower_case": True,
        "clean_up_tokenization_spaces": False,
    }
    special = {"bos_token": BOS, "eos_token": EOS, "unk_token": EOS, "pad_token": EOS}
    return {
        "vocab.json": json.dumps(vocab, ensure_ascii=False),
        "merges.txt": "#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges),
        "tokenizer_config.json": json.dumps(config, indent=2),
        "special_tokens_map.json": json.dumps(special, indent=2),
    }
