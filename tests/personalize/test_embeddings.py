"""Embedding files and tokens: our loader vs diffusers' own `load_textual_inversion`, A1111 round trips,
multi-vector expansion, and the bad inputs of issue 5."""

import pytest
import torch

from difflab.errors import DifflabError
from difflab.personalize import embeddings as E
from difflab.personalize.generate import load_concepts

from .helpers import random_embeds

PROMPT = "a <new1> next to a <style2> cat"


def _dim(pipe):
    return pipe.text_encoder.get_input_embeddings().weight.shape[1]


def _write_two(tmp_path, dim):
    a = E.save_embeds(tmp_path / "a" / "learned_embeds.safetensors",
                      {"<new1>": random_embeds(dim, 3, seed=1)})
    b = E.save_embeds(tmp_path / "b.safetensors", {"<style2>": random_embeds(dim, 1, seed=2)})
    return a, b


def test_files_load_identically_in_diffusers_and_in_our_loader(tmp_path, pipe, tiny_sd_dir):
    from difflab.models.sd import load_sd

    a, b = _write_two(tmp_path, _dim(pipe))
    load_concepts(pipe, [a, b])
    ref = load_sd(tiny_sd_dir, device="cpu")
    ref.load_textual_inversion([str(a.parent), str(b)])  # diffusers' own loader (folder + file)
    rows = ref.text_encoder.get_input_embeddings().weight.shape[0]
    assert len(pipe.tokenizer) == len(ref.tokenizer) == rows
    assert pipe.tokenizer.get_vocab() == ref.tokenizer.get_vocab()
    assert torch.equal(pipe.text_encoder.get_input_embeddings().weight,
                       ref.text_encoder.get_input_embeddings().weight)
    # multi-vector expansion: ours == diffusers' maybe_convert_prompt, and 3 + 1 learned ids appear
    expanded = E.expand_prompt(PROMPT, pipe.tokenizer)
    assert expanded == ref.maybe_convert_prompt(PROMPT, ref.tokenizer)
    assert expanded == "a <new1> <new1>_1 <new1>_2 next to a <style2> cat"
    ids = pipe.tokenizer(expanded).input_ids
    new_ids = [i for i in ids if i >= 49408]
    assert len(new_ids) == 4 and len(set(new_ids)) == 4
    ours = pipe.encode_prompt(PROMPT, "cpu", 1, False)[0]
    theirs = ref.encode_prompt(PROMPT, "cpu", 1, False)[0]
    assert torch.equal(ours, theirs)


def test_learned_vectors_change_the_text_encoding(pipe, tmp_path):
    dim = _dim(pipe)
    a = E.save_embeds(tmp_path / "x.safetensors", {"<new1>": random_embeds(dim, 2)})
    load_concepts(pipe, [a])
    before = pipe.encode_prompt("a <new1>", "cpu", 1, False)[0].clone()
    with torch.no_grad():
        pipe.text_encoder.get_input_embeddings().weight[-1] += 1.0  # the second vector, <new1>_1
    after = pipe.encode_prompt("a <new1>", "cpu", 1, False)[0]
    assert not torch.allclose(before, after)
    back = E.learned_vectors(pipe.tokenizer, pipe.text_encoder, "<new1>")
    assert torch.equal(back[0], E.read_embeds(a)["<new1>"][0])


@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
def test_a1111_round_trip_and_diffusers_reads_our_export(tmp_path, pipe, tiny_sd_dir, suffix):
    from difflab.models.sd import load_sd

    vec = random_embeds(_dim(pipe), 2, seed=5)
    src = E.save_embeds(tmp_path / "learned_embeds.safetensors", {"<dog7>": vec})
    a1111 = E.export_a1111(src, tmp_path / f"dog7{suffix}", step=100)
    if suffix == ".pt":
        raw = torch.load(a1111, weights_only=True)
        assert raw["name"] == "<dog7>" and raw["step"] == 100
        assert torch.equal(raw["string_to_param"]["*"], vec)
    back = E.import_a1111(a1111, tmp_path / "back.safetensors", token="<dog7>")
    assert torch.equal(E.read_embeds(back)["<dog7>"], vec)
    ref = load_sd(tiny_sd_dir, device="cpu")
    ref.load_textual_inversion(str(a1111), token="<dog7>")  # diffusers' A1111 reader
    load_concepts(pipe, [a1111] if suffix == ".pt" else [back])
    assert torch.equal(ref.text_encoder.get_input_embeddings().weight,
                       pipe.text_encoder.get_input_embeddings().weight)


def test_two_tokens_in_one_prompt_reach_the_unet(pipe, tmp_path):
    a, b = _write_two(tmp_path, _dim(pipe))
    load_concepts(pipe, [a, b])
    both = pipe.encode_prompt(PROMPT, "cpu", 1, False)[0]
    one = pipe.encode_prompt("a <new1> next to a cat", "cpu", 1, False)[0]
    assert both.shape == (1, 77, _dim(pipe)) and not torch.allclose(both, one)


def test_unknown_token_in_prompt(pipe):
    with pytest.raises(DifflabError, match="unknown token.*<nope>"):
        E.expand_prompt("a photo of <nope>", pipe.tokenizer)


def test_dimension_mismatch(pipe, tmp_path):
    bad = E.save_embeds(tmp_path / "big.safetensors", {"<big>": random_embeds(768)})
    with pytest.raises(DifflabError, match="dimension 768 does not match the text encoder's 32"):
        load_concepts(pipe, [bad])
    assert len(pipe.tokenizer) == 49408  # nothing was added


@pytest.mark.parametrize("token", ["dog", "<|endoftext|>", "two words", "", "<Dog>"])
def test_token_already_in_vocabulary_or_invalid(pipe, tmp_path, token):
    path = E.save_embeds(tmp_path / "t.safetensors", {token: random_embeds(_dim(pipe))})
    with pytest.raises(DifflabError, match="already in the tokenizer vocabulary|without spaces|lower-case"):
        load_concepts(pipe, [path])


def test_same_token_in_two_files(pipe, tmp_path):
    a = E.save_embeds(tmp_path / "a.safetensors", {"<x>": random_embeds(_dim(pipe))})
    b = E.save_embeds(tmp_path / "b.safetensors", {"<x>": random_embeds(_dim(pipe))})
    with pytest.raises(DifflabError, match="already defined"):
        load_concepts(pipe, [a, b])


def test_unreadable_and_malformed_files(tmp_path):
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not a safetensors file")
    with pytest.raises(DifflabError, match="not a readable embedding file"):
        E.read_embeds(junk)
    with pytest.raises(DifflabError, match="not found"):
        E.read_embeds(tmp_path / "missing.pt")
    torch.save({"string_to_param": {"x": torch.zeros(1, 4)}}, tmp_path / "bad.pt")
    with pytest.raises(DifflabError, match=r"string_to_param\['\*'\]"):
        E.read_embeds(tmp_path / "bad.pt")
    two = E.save_embeds(tmp_path / "two.safetensors", {"<a>": torch.zeros(1, 4), "<b>": torch.ones(1, 4)})
    with pytest.raises(DifflabError, match="pick one with --token"):
        E.export_a1111(two, tmp_path / "x.pt")


def test_integer_nan_and_pickled_code_embeddings_are_refused(tmp_path):
    from safetensors.torch import save_file

    save_file({"<a>": torch.ones(1, 4, dtype=torch.int64)}, str(tmp_path / "int.safetensors"))
    with pytest.raises(DifflabError, match=r"int.safetensors\['<a>'\]: embedding has dtype int64, expected float"):
        E.read_embeds(tmp_path / "int.safetensors")
    save_file({"<a>": torch.tensor([[0.0, float("nan")]])}, str(tmp_path / "nan.safetensors"))
    with pytest.raises(DifflabError, match="embedding holds NaN/inf"):
        E.read_embeds(tmp_path / "nan.safetensors")
    (tmp_path / "text.pt").write_text("a text file named .pt")
    with pytest.raises(DifflabError, match="text.pt: not a readable embedding file"):
        E.read_embeds(tmp_path / "text.pt")

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    torch.save({"string_to_param": {"*": Evil()}}, tmp_path / "evil.pt")
    with pytest.raises(DifflabError, match="evil.pt: refused: the file holds Python objects") as e:
        E.read_embeds(tmp_path / "evil.pt")
    assert "\n" not in str(e.value)
