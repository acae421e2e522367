import json
import re

import numpy as np
import pytest
import torch
from PIL import Image

from difflab.data import load_domain
from difflab.diffusion.schedule import NoiseSchedule
from difflab.digits.classify import ClassifierTrainConfig, predict, train_classifier
from difflab.digits.evaluate import evaluate, format_results, frechet_distance
from difflab.digits.generate import GenerateConfig, generate
from difflab.errors import DifflabError


def _gen(out, model, **kw):
    cfg = GenerateConfig(per_digit=2, steps=3, batch_size=16, **kw)
    return generate(out, model, NoiseSchedule(), cfg, overwrite=kw.pop("overwrite", False), progress=False)


def test_layout_and_determinism(tmp_path, tiny_unet):
    t = _gen(tmp_path / "a", tiny_unet)
    assert t["images"] == 40 and t["network_s"] <= t["total_s"]
    for dom in ("mnistm", "svhn"):
        names = sorted(p.name for p in (tmp_path / "a" / dom).iterdir())
        assert names == sorted(f"{d}_{k:03d}.png" for d in range(10) for k in (1, 2))  # nothing else
        img = Image.open(tmp_path / "a" / dom / "0_001.png")
        assert img.size == (28, 28) and img.mode == "RGB"
        grid = Image.open(tmp_path / "a" / f"{dom}_grid.png")
        assert grid.width > 2 * 2 * 28 and grid.height > 10 * 2 * 28
    _gen(tmp_path / "b", tiny_unet)
    same = [np.array_equal(np.asarray(Image.open(p)), np.asarray(Image.open(tmp_path / "b" / "svhn" / p.name)))
            for p in (tmp_path / "a" / "svhn").iterdir()]
    assert all(same)
    _gen(tmp_path / "c", tiny_unet, seed=1)
    a = np.asarray(Image.open(tmp_path / "a" / "svhn" / "3_001.png"))
    assert not np.array_equal(a, np.asarray(Image.open(tmp_path / "c" / "svhn" / "3_001.png")))


def test_chunking_does_not_change_images(tmp_path, tiny_unet):
    cfg = dict(per_digit=1, steps=3, bf16=False)
    generate(tmp_path / "a", tiny_unet, NoiseSchedule(), GenerateConfig(batch_size=20, **cfg), progress=False)
    generate(tmp_path / "b", tiny_unet, NoiseSchedule(), GenerateConfig(batch_size=7, **cfg), progress=False)
    a = np.asarray(Image.open(tmp_path / "a" / "mnistm" / "5_001.png")).astype(int)
    b = np.asarray(Image.open(tmp_path / "b" / "mnistm" / "5_001.png")).astype(int)
    assert np.abs(a - b).max() <= 1  # same noise; only float rounding may differ across batch sizes


def test_refuses_non_empty_output_unless_overwrite(tmp_path, tiny_unet):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(DifflabError, match="not empty"):
        _gen(out, tiny_unet)
    assert (out / "keep.txt").read_text() == "mine"
    generate(out, tiny_unet, NoiseSchedule(), GenerateConfig(per_digit=1, steps=2), overwrite=True, progress=False)
    assert not (out / "keep.txt").exists() and len(list((out / "svhn").iterdir())) == 10


def test_failure_leaves_nothing_half_written(tmp_path, tiny_unet):
    class Boom(torch.nn.Module):
        def forward(self, *a):
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        _gen(tmp_path / "out", Boom())
    assert not (tmp_path / "out").exists()
    assert list(tmp_path.iterdir()) == []  # the staging folder is gone too


@pytest.mark.parametrize("n", [0, -3])
def test_bad_per_digit(tmp_path, tiny_unet, n):
    with pytest.raises(DifflabError, match="--per-digit must be at least 1"):
        generate(tmp_path / "o", tiny_unet, NoiseSchedule(), GenerateConfig(per_digit=n), progress=False)


def test_unwritable_output(tmp_path, tiny_unet):
    blocker = tmp_path / "file"
    blocker.write_text("x")  # a file where a folder should be: not writable for anyone, root included
    with pytest.raises(DifflabError, match="not writable"):
        _gen(blocker / "out", tiny_unet)


def test_frechet_distance_properties():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(2000, 4))
    assert frechet_distance(a, a) == pytest.approx(0, abs=1e-6)
    b = a + np.array([3.0, 0, 0, 0])
    assert frechet_distance(a, b) == pytest.approx(9.0, rel=1e-6)  # |mu1 - mu2|^2, same covariance
    c = a * 2  # covariance 4I vs I: trace term 4 * (1 + 4 - 2*2) = 4
    assert frechet_distance(a, c) == pytest.approx(4.0, rel=0.1)


def test_eval_counts_match_direct_prediction(tmp_path, tiny_unet):
    paths = {}
    for dom in ("mnistm", "svhn"):
        paths[dom] = tmp_path / f"clf_{dom}.safetensors"
        train_classifier(ClassifierTrainConfig(dom, str(paths[dom]), epochs=1, train_size=200), progress=False)
    _gen(tmp_path / "gen", tiny_unet)
    res = evaluate(tmp_path / "gen", {k: str(v) for k, v in paths.items()})
    from difflab.digits.evaluate import read_generated
    from difflab.models.digits import load_classifier

    for dom in ("mnistm", "svhn"):
        x, y, _ = read_generated(tmp_path / "gen" / dom)
        pred, _ = predict(load_classifier(paths[dom])[0], x)
        r = res["domains"][dom]
        assert r["correct"] == int((pred == y).sum()) and r["total"] == 20
        assert 0 <= r["real_val_acc"] <= 1 and r["fd_generated_vs_real"] >= 0
    # JSON holds exact fractions (Python floats), not float32 means: 17/20 is 0.85, not 0.8500000238418579
    saved = json.loads((tmp_path / "gen" / "eval.json").read_text())["domains"]
    for dom, r in saved.items():
        assert r["acc"] == r["correct"] / r["total"]
        assert all(a == int(a * 2) / 2 for a in r["per_digit_acc"].values())  # 2 images a digit: 0, 1/2, 1
        n = len(load_domain(dom, "val"))
        assert r["real_val_acc"] == round(r["real_val_acc"] * n) / n
    text = format_results(res)
    assert re.search(r"^MNIST-M acc = \d\.\d{4} \(correct/total = \d+/20\)", text, re.M)
    assert re.search(r"^SVHN acc = ", text, re.M) and "mean acc" in text
    assert (tmp_path / "gen" / "eval.json").is_file()


def test_eval_of_missing_folder(tmp_path):
    with pytest.raises(DifflabError, match="not found"):
        evaluate(tmp_path / "nothing")
