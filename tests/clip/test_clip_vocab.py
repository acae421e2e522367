"""The converted vocabulary tokenises like OpenAI's CLIP (ids from openai/clip-vit-base-patch32)."""

import json

import pytest

from difflab.errors import DifflabError
from difflab.models import clip_vocab as vocab

transformers = pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def tok(clip_tokenizer_dir):
    return transformers.CLIPTokenizer.from_pretrained(clip_tokenizer_dir)


def test_layout_matches_openai(clip_tokenizer_dir, tok):
    assert len(tok) == 49408
    assert tok.model_max_length == 77
    assert (tok.bos_token_id, tok.eos_token_id, tok.pad_token_id) == (49406, 49407, 49407)
    v = json.loads((clip_tokenizer_dir / "vocab.json").read_text(encoding="utf-8"))
    assert len(v) == 49408 and sorted(v.values()) == list(range(49408))
    assert v["!"] == 0 and v["!</w>"] == 256 and v["a</w>"] == 320
    merges = (clip_tokenizer_dir / "merges.txt").read_text(encoding="utf-8").splitlines()
    assert merges[0].startswith("#version") and len(merges) == 1 + vocab.N_MERGES
    assert merges[1] == "i n" and v["in"] == 512  # first merge -> first id after the 512 byte symbols


@pytest.mark.parametrize("text, ids", [
    # reference ids as produced by OpenAI's SimpleTokenizer / openai/clip-vit-base-patch32
    ("a photo of a cat", [49406, 320, 1125, 539, 320, 2368, 49407]),
    ("a photo of a cat.", [49406, 320, 1125, 539, 320, 2368, 269, 49407]),
    ("A Photo of a DOG", [49406, 320, 1125, 539, 320, 1929, 49407]),
])
def test_known_ids(tok, text, ids):
    assert tok(text).input_ids == ids


def test_bpe_roundtrip_and_truncation(tok):
    # byte-level BPE is lossless up to lower-casing and spaces (CLIP splits digits and punctuation apart)
    text = "a blurry photo of a willow tree, naïve café 東京 2024!"
    ids = tok(text).input_ids
    assert tok.decode(ids, skip_special_tokens=True).replace(" ", "") == text.lower().replace(" ", "")
    long = tok(" ".join(["cat"] * 200), truncation=True).input_ids
    assert len(long) == 77 and long[0] == 49406 and long[-1] == 49407


def test_max_merges_smaller_vocab(tmp_path):
    out = vocab.write_clip_tokenizer(tmp_path, max_merges=100)
    tok = transformers.CLIPTokenizer.from_pretrained(out)
    assert len(tok) == 512 + 100 + 2
    assert (tok.bos_token_id, tok.eos_token_id) == (612, 613)
    ids = tok("a photo of a cat").input_ids
    assert max(ids[1:-1]) < 612 and len(ids) > 7  # fewer merges -> more, shorter pieces
    with pytest.raises(DifflabError, match="max_merges"):
        vocab.write_clip_tokenizer(tmp_path, max_merges=vocab.N_MERGES + 1)


def test_missing_bpe_file_is_clear(monkeypatch):
    monkeypatch.setattr(vocab.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(DifflabError, match="open-clip-torch"):
        vocab.clip_bpe_path()
