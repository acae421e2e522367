"""Prompt file -> image layout: exact folder/file names and counts, batch-independent seeds, resume,
two learned tokens in one prompt, and the prompt-file errors."""

import json

import numpy as np
import pytest
from PIL import Image

from difflab.errors import DifflabError
from difflab.personalize import embeddings as E
from difflab.personalize.config import GenerateConfig
from difflab.personalize.generate import generate, generate_images, generate_layout, image_seed, load_concepts
from difflab.personalize.prompts import load_prompts

from .helpers import random_embeds

PROMPTS = {
    "0": {"src_image": "dog", "token_name": "<new1>",
          "prompt": ["a photo of {}", "a {} in the style of <new2>"],
          "prompt_4_clip_eval": ["a photo of a dog", "a dog painting"], "baseline": [[79, 34], [74, 35]]},
    "7": {"src_image": "style", "token_name": "<new2>", "prompt": ["a house in the style of {}"],
          "prompt_4_clip_eval": ["a painting of a house"], "baseline": [[60, 30]]},
}


@pytest.fixture
def setup(tmp_path, pipe):
    (tmp_path / "prompts.json").write_text(json.dumps(PROMPTS))
    a = E.save_embeds(tmp_path / "a.safetensors", {"<new1>": random_embeds(32, 2, seed=1)})
    b = E.save_embeds(tmp_path / "b.safetensors", {"<new2>": random_embeds(32, 1, seed=2)})
    return tmp_path / "prompts.json", [a, b]


def test_layout_names_and_counts(tmp_path, tiny_sd_dir, setup):
    prompts, embeds = setup
    out = tmp_path / "gen"
    paths = generate(prompts, out, tiny_sd_dir, embeds, GenerateConfig(per_prompt=3, steps=2, batch_size=2),
                     device="cpu", progress=False)
    expect = {f"{k}/{i}/source{k}_prompt{i}_{j}.png" for k, n in (("0", 2), ("7", 1)) for i in range(n)
              for j in range(3)}
    found = {str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()}
    assert found == expect and {str(p.relative_to(out)) for p in paths} == expect
    im = Image.open(out / "0/1/source0_prompt1_2.png")
    assert im.size == (64, 64) and im.mode == "RGB"
    with pytest.raises(DifflabError, match="not empty"):
        generate(prompts, out, tiny_sd_dir, embeds, GenerateConfig(per_prompt=1, steps=1), device="cpu",
                 progress=False)


def test_images_do_not_depend_on_batch_size_and_resume_redraws_the_same(tmp_path, pipe, setup):
    prompts, embeds = setup
    load_concepts(pipe, embeds)
    concepts = load_prompts(prompts)[:1]
    b1, b3 = (GenerateConfig(per_prompt=3, steps=2, batch_size=b) for b in (1, 3))
    generate_layout(pipe, concepts, tmp_path / "b1", b1, progress=False)
    generate_layout(pipe, concepts, tmp_path / "b3", b3, progress=False)
    victim = tmp_path / "b3/0/1/source0_prompt1_1.png"
    before = np.asarray(Image.open(victim))
    victim.unlink()
    generate_layout(pipe, concepts, tmp_path / "b3", b3, progress=False)  # draws only the missing image
    for f in sorted((tmp_path / "b1").rglob("*.png")):
        a = np.asarray(Image.open(f)).astype(int)
        b = np.asarray(Image.open(tmp_path / "b3" / f.relative_to(tmp_path / "b1"))).astype(int)
        assert np.abs(a - b).max() <= 1  # batched float maths may round one step differently
    assert np.abs(np.asarray(Image.open(victim)).astype(int) - before).max() <= 1
    seeds = {image_seed(0, c, i, k) for c in "07" for i in range(2) for k in range(25)}
    assert len(seeds) == 100


def test_both_learned_tokens_shape_the_image(pipe, setup):
    _, embeds = setup
    load_concepts(pipe, embeds)
    seeds = [1, 2]
    two = generate_images(pipe, "a <new1> in the style of <new2>", seeds, 2, 7.5)
    one = generate_images(pipe, "a <new1> in the style of x", seeds, 2, 7.5)
    assert two.shape == (2, 64, 64, 3) and two.dtype == np.uint8 and not np.array_equal(one, two)


def test_unknown_token_fails_before_output_is_created(tmp_path, tiny_sd_dir, setup):
    prompts, embeds = setup
    with pytest.raises(DifflabError, match="unknown token.*<new2>"):
        generate(prompts, tmp_path / "never", tiny_sd_dir, embeds[:1], GenerateConfig(per_prompt=1), device="cpu")
    assert not (tmp_path / "never").exists()


@pytest.mark.parametrize("edit, message", [
    (lambda d: d["0"].pop("prompt_4_clip_eval"), "missing key.*prompt_4_clip_eval"),
    (lambda d: d["7"].pop("token_name"), r"\['7'\]: missing key.*token_name"),
    (lambda d: d["0"].update(baseline=[[79, 34]]), "one entry per prompt"),
    (lambda d: d["0"].update(baseline=[[79], [1, 2]]), "baseline: must be a list of"),
    (lambda d: d["0"].update(prompt=[]), "prompt: must be a non-empty list"),
    (lambda d: d.update({"../x": d["0"]}), "folder name"),
    (lambda d: d.update({"3": "not an object"}), "must be an object"),
])
def test_bad_prompt_files(tmp_path, edit, message):
    data = json.loads(json.dumps(PROMPTS))
    edit(data)
    path = tmp_path / "p.json"
    path.write_text(json.dumps(data))
    with pytest.raises(DifflabError, match=message):
        load_prompts(path)


def test_unreadable_prompt_files(tmp_path):
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(DifflabError, match="not valid JSON"):
        load_prompts(tmp_path / "bad.json")
    (tmp_path / "list.json").write_text("[1, 2]")
    with pytest.raises(DifflabError, match="non-empty object"):
        load_prompts(tmp_path / "list.json")
    with pytest.raises(DifflabError, match="not found"):
        load_prompts(tmp_path / "missing.json")
    entry = json.dumps(PROMPTS["0"])
    (tmp_path / "dupe.json").write_text(f'{{"0": {entry}, "0": {entry}}}')  # json.loads keeps one silently
    with pytest.raises(DifflabError, match="key '0' appears twice"):
        load_prompts(tmp_path / "dupe.json")
    (tmp_path / "latin1.json").write_bytes('{"0": "é"}'.encode("latin-1"))
    with pytest.raises(DifflabError, match=r"latin1.json:1: prompt file is not UTF-8"):
        load_prompts(tmp_path / "latin1.json")


def test_failed_run_leaves_no_folder_and_resume_keeps_partial_images(tmp_path, tiny_sd_dir, setup, monkeypatch):
    import difflab.personalize.generate as G

    prompts, embeds = setup
    real, calls = G.generate_images, []

    def dies_on_second_call(*a, **kw):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("killed")
        return real(*a, **kw)

    monkeypatch.setattr(G, "generate_images", dies_on_second_call)
    kw = dict(cfg=GenerateConfig(per_prompt=1, steps=1, batch_size=1), device="cpu", progress=False)
    with pytest.raises(RuntimeError):
        generate(prompts, tmp_path / "gen", tiny_sd_dir, embeds, **kw)
    assert not (tmp_path / "gen").exists() and not list(tmp_path.glob(".gen*"))
    calls.clear()
    with pytest.raises(RuntimeError):  # --resume writes in place: the first image survives
        generate(prompts, tmp_path / "gen", tiny_sd_dir, embeds, resume=True, **kw)
    assert len(list((tmp_path / "gen").rglob("*.png"))) == 1
    calls.clear()
    monkeypatch.setattr(G, "generate_images", real)
    assert len(generate(prompts, tmp_path / "gen", tiny_sd_dir, embeds, resume=True, **kw)) == 3


@pytest.mark.parametrize("guidance", [float("nan"), float("inf"), -1.0])
def test_non_finite_guidance_is_refused_before_loading(tmp_path, guidance):
    with pytest.raises(DifflabError, match="--guidance must be (a finite number|in )"):
        generate(tmp_path / "unused.json", tmp_path / "out", "no-model", ["x"], GenerateConfig(guidance=guidance))
    assert not (tmp_path / "out").exists()
