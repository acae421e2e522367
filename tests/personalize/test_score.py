"""CLIP scoring of a layout against an independent computation with transformers' CLIPModel."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from difflab.errors import DifflabError
from difflab.personalize.prompts import image_path
from difflab.personalize.score import rank_top, score

N = 7  # images per prompt: more than the top 5, so the ranking matters
EVAL = ["a photo of a cat", "a cup of coffee on a table"]


def _layout(tmp_path, photos_dir):
    """Generated images: crops/noise at random; references: two of the photos."""
    rng = np.random.default_rng(0)
    photos = [np.asarray(Image.open(p).convert("RGB")) for p in sorted(photos_dir.iterdir())]
    for i in range(2):
        for k in range(N):
            a = photos[k % 3]
            y, x = rng.integers(0, 100, 2)
            im = a[y:y + 200, x:x + 200] if k % 2 else rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
            path = image_path(tmp_path / "gen", "0", i, k)
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.ascontiguousarray(im)).save(path)
    refs = tmp_path / "concepts" / "0"
    refs.mkdir(parents=True)
    for p in sorted(photos_dir.iterdir())[:2]:
        Image.open(p).save(refs / p.name)
    return tmp_path / "gen", refs


def _reference(clip_dir, gen, refs):
    """Direct transformers computation: features, cosines, mean over refs, rank, top-5 means."""
    from transformers import CLIPImageProcessorPil, CLIPModel, CLIPTokenizer

    model = CLIPModel.from_pretrained(clip_dir).eval()
    proc = CLIPImageProcessorPil.from_pretrained(clip_dir)
    tok = CLIPTokenizer.from_pretrained(clip_dir, model_max_length=77)

    def img_feats(images):
        with torch.no_grad():
            f = model.get_image_features(pixel_values=proc(images=images, return_tensors="pt").pixel_values)
        f = f.pooler_output if hasattr(f, "pooler_output") else f
        return (f / f.norm(dim=-1, keepdim=True)).double().numpy()

    ref = img_feats([Image.open(p).convert("RGB") for p in sorted(refs.iterdir())])
    out = []
    for i, text in enumerate(EVAL):
        ims = [Image.open(image_path(gen, "0", i, k)).convert("RGB") for k in range(N)]
        g = img_feats(ims)
        with torch.no_grad():
            t = model.get_text_features(**tok([text], return_tensors="pt", padding=True))
        t = t.pooler_output if hasattr(t, "pooler_output") else t
        t = (t / t.norm(dim=-1, keepdim=True)).double().numpy()[0]
        img = (100 * g @ ref.T).mean(axis=1)  # every pair, then the mean over references
        txt = 100 * g @ t
        top = np.argsort(-(img + 2.5 * txt), kind="stable")[:5]
        out.append((img[top].mean(), txt[top].mean(), top.tolist()))
    return out


def test_scores_match_direct_transformers_and_pass_fail(tmp_path, photos_dir, tiny_clip_dir):
    gen, refs = _layout(tmp_path, photos_dir)
    expect = _reference(tiny_clip_dir, gen, refs)
    # prompt 0 sits just below its scores (PASS); prompt 1 asks for 0.5 more image score (FAIL)
    base = [[expect[0][0] - 0.01, expect[0][1] - 0.01], [expect[1][0] + 0.5, expect[1][1] - 5]]
    prompts = {"0": {"src_image": "cat", "token_name": "<new1>", "prompt": ["{}", "{} cup"],
                     "prompt_4_clip_eval": EVAL, "baseline": base}}
    (tmp_path / "p.json").write_text(json.dumps(prompts))
    results, text = score(tmp_path / "p.json", gen, tmp_path / "concepts", tiny_clip_dir)
    for r, (img, txt, top) in zip(results, expect):
        assert r.image == pytest.approx(img, abs=1e-3) and r.text == pytest.approx(txt, abs=1e-3)
        assert r.top == top
    assert [r.passed for r in results] == [True, False]
    assert text.splitlines()[-1] == "passed 1/2" and "PASS" in text and "FAIL" in text
    saved = json.loads((gen / "scores.json").read_text())
    assert saved["text_weight"] == 2.5 and len(saved["results"]) == 2


def test_rank_top_uses_image_plus_2_5_text():
    img = torch.tensor([90.0, 80.0, 70.0, 60.0, 50.0, 40.0])
    txt = torch.tensor([0.0, 10.0, 0.0, 20.0, 0.0, 30.0])  # combined: 90 105 70 110 50 115
    mi, mt, top = rank_top(img, txt, k=2)
    assert top == [5, 3] and mi == pytest.approx(50.0) and mt == pytest.approx(25.0)


def test_bad_concept_and_layout_folders(tmp_path, photos_dir, tiny_clip_dir):
    gen, refs = _layout(tmp_path, photos_dir)
    prompts = {"0": {"src_image": "cat", "token_name": "<new1>", "prompt": ["{}", "{}", "{}"],
                     "prompt_4_clip_eval": EVAL + ["x"], "baseline": [[1, 1]] * 3}}
    (tmp_path / "p.json").write_text(json.dumps(prompts))
    with pytest.raises(DifflabError, match="no generated images"):  # prompt 2 was never generated
        score(tmp_path / "p.json", gen, tmp_path / "concepts", tiny_clip_dir)
    for p in refs.iterdir():
        p.unlink()
    (refs / "readme.txt").write_text("no photos")
    with pytest.raises(DifflabError, match="concept folder has no images"):
        score(tmp_path / "p.json", gen, tmp_path / "concepts", tiny_clip_dir)
    with pytest.raises(DifflabError, match="concept folder not found"):
        score(tmp_path / "p.json", gen, tmp_path / "elsewhere", tiny_clip_dir)
