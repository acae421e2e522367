"""Templates and the ensemble maths (normalised mean of normalised per-template text embeddings)."""

import pytest
import torch

from difflab.clip import prompts
from difflab.errors import DifflabError

transformers = pytest.importorskip("transformers")


def test_class_to_words():
    assert prompts.class_to_words("willow_tree") == "willow tree"
    assert prompts.class_to_words("  aquarium__fish ") == "aquarium fish"
    assert prompts.class_to_words("t-shirt") == "t-shirt"
    with pytest.raises(DifflabError, match="no words"):
        prompts.class_to_words("__")


def test_fill_is_class_major():
    assert prompts.fill(["a {}.", "the {}!"], ["maple_tree", "cat"]) == \
        ["a maple tree.", "the maple tree!", "a cat.", "the cat!"]


def test_identical_templates_equal_single(tiny_scorer):
    names = ["apple", "willow_tree", "sea"]
    single = prompts.class_embeddings(tiny_scorer, names, ["a photo of a {}."])
    repeated = prompts.class_embeddings(tiny_scorer, names, ["a photo of a {}."] * 4)
    torch.testing.assert_close(repeated, single, atol=1e-6, rtol=0)
    torch.testing.assert_close(single.norm(dim=-1), torch.ones(3))


def test_ensemble_is_normalised_mean_of_normalised(tiny_clip_dir, tiny_scorer):
    # independent reference: transformers' CLIPModel, one prompt at a time, maths written out by hand
    model = transformers.CLIPModel.from_pretrained(tiny_clip_dir).eval()
    tok = transformers.CLIPTokenizer.from_pretrained(tiny_clip_dir)
    names, templates = ["apple", "willow_tree"], list(prompts.ENSEMBLE[:5])
    expected = []
    for name in names:
        vecs = []
        for t in templates:
            with torch.no_grad():
                e = model.get_text_features(**tok([t.format(name.replace("_", " "))], return_tensors="pt"))
            e = e.pooler_output[0]
            vecs.append(e / e.norm())
        m = torch.stack(vecs).mean(0)
        expected.append(m / m.norm())
    ours = prompts.class_embeddings(tiny_scorer, names, templates)
    torch.testing.assert_close(ours, torch.stack(expected), atol=1e-5, rtol=0)
    # the check above would pass trivially if all templates embedded alike: they must not
    assert not torch.allclose(ours, prompts.class_embeddings(tiny_scorer, names, templates[:1]), atol=1e-3)


def test_ensemble_embeddings_shape_check():
    with pytest.raises(DifflabError, match="do not split"):
        prompts.ensemble_embeddings(torch.zeros(5, 4), 2)


def test_load_templates(tmp_path):
    assert prompts.load_templates("single") == ["a photo of a {}."]
    assert len(prompts.load_templates("ensemble")) == len(prompts.ENSEMBLE) >= 10
    f = tmp_path / "t.txt"
    f.write_text("# my templates\n\na sketch of a {}.\n  an origami {}.  \n")
    assert prompts.load_templates(str(f)) == ["a sketch of a {}.", "an origami {}."]
    for bad in ["a photo.\n", "a {} and a {}.\n", "a photo of a {0}.\n", "a {class}.\n"]:
        f.write_text(bad)
        with pytest.raises(DifflabError, match=r"t\.txt:1: a template needs exactly one"):
            prompts.load_templates(str(f))
    f.write_text("# only a comment\n")
    with pytest.raises(DifflabError, match="no templates"):
        prompts.load_templates(str(f))
    with pytest.raises(DifflabError, match="neither 'single', 'ensemble' nor a file"):
        prompts.load_templates(str(tmp_path / "missing.txt"))
