"""ClipScorer against transformers' CLIPModel computed directly; loading errors."""

import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from difflab.errors import DifflabError
from difflab.models.clip import ClipScorer

transformers = pytest.importorskip("transformers")


def _images(n, seed=0, size=40):
    rng = np.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 256, (size, size + 8 * i, 3), dtype=np.uint8)) for i in range(n)]


@pytest.fixture(scope="module")
def reference(tiny_clip_dir):
    model = transformers.CLIPModel.from_pretrained(tiny_clip_dir).eval()
    processor = transformers.CLIPProcessor.from_pretrained(tiny_clip_dir)
    return model, processor


def test_embeddings_match_transformers(tiny_scorer, reference):
    model, processor = reference
    images, texts = _images(5), ["a photo of a cat.", "a dog", "x", "a photo of a willow tree, at night."]
    inputs = processor(text=texts, images=images, return_tensors="pt", padding=True)
    with torch.no_grad():
        out = model(**inputs)
    ours_img, ours_txt = tiny_scorer.embed_images(images), tiny_scorer.embed_texts(texts)
    assert ours_img.shape == (5, 16) and ours_txt.shape == (4, 16)
    torch.testing.assert_close(ours_img.norm(dim=-1), torch.ones(5))
    torch.testing.assert_close(ours_img, out.image_embeds, atol=1e-5, rtol=0)
    torch.testing.assert_close(ours_txt, out.text_embeds, atol=1e-5, rtol=0)
    # batch size 4 splits both inputs: batching must not change anything (padding is ignored)
    torch.testing.assert_close(tiny_scorer.embed_texts(texts[:1]), ours_txt[:1], atol=1e-6, rtol=0)


def test_scores(tiny_scorer):
    images, refs = _images(3), _images(4, seed=1)
    a, b = tiny_scorer.embed_images(images), tiny_scorer.embed_images(refs)
    expected = torch.stack([torch.stack([100 * torch.dot(x, y) for y in b]).mean() for x in a])
    torch.testing.assert_close(tiny_scorer.image_image_score(images, refs), expected, atol=1e-4, rtol=0)
    torch.testing.assert_close(tiny_scorer.image_image_score(a, b), expected, atol=1e-4, rtol=0)
    # an image against itself scores 100
    torch.testing.assert_close(tiny_scorer.image_image_score(images[:1], images[:1]), torch.tensor([100.0]))
    texts = ["a cat", "a dog", "a tree"]
    t = tiny_scorer.embed_texts(texts)
    torch.testing.assert_close(tiny_scorer.image_text_score(images, texts), 100 * (a * t).sum(-1),
                               atol=1e-4, rtol=0)
    with pytest.raises(DifflabError, match="one text per image"):
        tiny_scorer.image_text_score(images, texts[:2])
    with pytest.raises(DifflabError, match="at least one reference"):
        tiny_scorer.image_image_score(images, [])
    assert tiny_scorer.logit_scale == pytest.approx(100.0, rel=1e-5)


def test_missing_folder_is_one_line_error(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(DifflabError, match="no such model folder") as e:
        ClipScorer.from_pretrained(tmp_path / "nope")
    assert "\n" not in str(e.value) and "--model" in str(e.value)
    with pytest.raises(DifflabError, match="no such model folder"):  # a Hub id that is not cached
        ClipScorer.from_pretrained("difflab-test/not-a-cached-model")


def test_folder_without_weights(tmp_path, tiny_clip_dir):
    folder = shutil.copytree(tiny_clip_dir, tmp_path / "m")
    (folder / "model.safetensors").unlink()
    with pytest.raises(DifflabError, match="no weights") as e:
        ClipScorer.from_pretrained(folder)
    assert "\n" not in str(e.value)
    (folder / "model.safetensors").write_bytes(b"garbage")
    with pytest.raises(DifflabError, match="cannot load CLIP model"):
        ClipScorer.from_pretrained(folder)
    with pytest.raises(DifflabError, match="no config.json"):
        ClipScorer.from_pretrained(tmp_path)


def test_legacy_openai_folder_format(tmp_path, tiny_clip_dir, tiny_scorer):
    # openai/clip-vit-base-patch32 ships an old-style preprocessor_config (int sizes, feature extractor)
    # and text_config.eos_token_id = 2 (transformers then pools at the largest id, i.e. EOS): same results
    import json

    folder = shutil.copytree(tiny_clip_dir, tmp_path / "legacy")
    (folder / "preprocessor_config.json").write_text(json.dumps({
        "crop_size": 32, "do_center_crop": True, "do_normalize": True, "do_resize": True,
        "feature_extractor_type": "CLIPFeatureExtractor", "image_mean": [0.48145466, 0.4578275, 0.40821073],
        "image_std": [0.26862954, 0.26130258, 0.27577711], "resample": 3, "size": 32}))
    config = json.loads((folder / "config.json").read_text())
    config["text_config"].update(eos_token_id=2, bos_token_id=0, pad_token_id=1)
    (folder / "config.json").write_text(json.dumps(config))
    legacy = ClipScorer.from_pretrained(folder)
    images, texts = _images(2), ["a photo of a cat.", "a very long prompt " * 30]
    torch.testing.assert_close(legacy.embed_images(images), tiny_scorer.embed_images(images), atol=1e-6, rtol=0)
    torch.testing.assert_close(legacy.embed_texts(texts), tiny_scorer.embed_texts(texts), atol=1e-6, rtol=0)
    (folder / "preprocessor_config.json").unlink()  # falls back to CLIP's standard preprocessing
    torch.testing.assert_close(ClipScorer.from_pretrained(folder).embed_images(images),
                               tiny_scorer.embed_images(images), atol=1e-6, rtol=0)
