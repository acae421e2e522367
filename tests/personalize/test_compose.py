"""Masked multi-path composition: a mask covering everything reproduces the plain pipeline exactly."""

import re

import numpy as np
import pytest
import torch
from PIL import Image

from difflab.errors import DifflabError
from difflab.personalize import embeddings as E
from difflab.personalize.compose import Region, blend_weights, compose, parse_region, region_prompts
from difflab.personalize.config import ComposeConfig
from difflab.personalize.generate import load_concepts

from .helpers import random_embeds

STEPS = 4


@pytest.fixture
def two_concepts(pipe, tmp_path):
    a = E.save_embeds(tmp_path / "a.safetensors", {"<new1>": random_embeds(32, 2, seed=1)})
    b = E.save_embeds(tmp_path / "b.safetensors", {"<new2>": random_embeds(32, 1, seed=2)})
    load_concepts(pipe, [a, b])
    return pipe


def _single(pipe, prompt, seed=3):
    return pipe(prompt, num_inference_steps=STEPS, guidance_scale=7.5, height=64, width=64,
                generator=torch.Generator().manual_seed(seed), output_type="np").images[0]


def _compose(pipe, regions, prompt="a photo of {} on grass", seed=3, feather=0.0, **kw):
    return compose(pipe, prompt, regions, ComposeConfig(steps=STEPS, feather=feather, **kw),
                   generator=torch.Generator().manual_seed(seed), progress=False)


def test_all_left_mask_equals_the_single_path(two_concepts, tmp_path):
    pipe = two_concepts
    Image.new("L", (64, 64), 255).save(tmp_path / "all.png")
    Image.new("L", (64, 64), 0).save(tmp_path / "none.png")
    regions = [Region("<new1>", str(tmp_path / "all.png")), Region("<new2>", str(tmp_path / "none.png"))]
    got = _compose(pipe, regions, feather=1.0)
    want = _single(pipe, "a photo of <new1> on grass")
    assert got.shape == want.shape == (64, 64, 3)
    assert np.array_equal(got, want)  # bit-identical, not just close
    # and the other concept alone, with the masks swapped
    swapped = [Region("<new1>", str(tmp_path / "none.png")), Region("<new2>", str(tmp_path / "all.png"))]
    assert np.array_equal(_compose(pipe, swapped), _single(pipe, "a photo of <new2> on grass"))


def test_halves_mix_both_paths(two_concepts):
    pipe = two_concepts
    halves = _compose(pipe, [Region("<new1>", "left"), Region("<new2>", "right")])
    one, two = _single(pipe, "a photo of <new1> on grass"), _single(pipe, "a photo of <new2> on grass")
    assert not np.allclose(halves, one, atol=1e-3) and not np.allclose(halves, two, atol=1e-3)
    # one prompt split into two regions: weights sum to 1 everywhere, so nothing changes
    same = _compose(pipe, [Region("<new1>", "left"), Region("<new1>", "right")], feather=1.5)
    np.testing.assert_allclose(same, one, atol=1e-5)


def test_blend_weights():
    wr, wb = blend_weights([Region("a", "left"), Region("b", "right")], 8, 8)
    assert wr.shape == (2, 1, 8, 8) and wb.shape == (1, 8, 8)
    assert torch.equal(wr[0, 0, :, :4], torch.ones(8, 4)) and torch.equal(wr[0, 0, :, 4:], torch.zeros(8, 4))
    assert torch.equal(wb, torch.zeros(1, 8, 8))
    wr, wb = blend_weights([Region("a", "left"), Region("b", "top")], 8, 8, feather=1.0)
    total = wr.sum(0) + wb
    torch.testing.assert_close(total, torch.ones(1, 8, 8))
    assert wb[0, -1, -1] > 0.9 and wb[0, 0, 0] < 1e-6  # bottom-right is nobody's: the base path's
    assert torch.allclose(wr[:, 0, 0, 0], torch.tensor([0.5, 0.5]), atol=0.05)  # overlap is shared
    wr, wb = blend_weights([Region("a", "full")], 4, 4, base_weight=0.25)
    assert torch.allclose(wr, torch.full_like(wr, 0.75)) and torch.allclose(wb, torch.full_like(wb, 0.25))


def test_region_prompts():
    regions = [Region("<new1>", "left"), Region("<new2>", "right")]
    assert region_prompts("a photo of {} on a beach", regions) == (
        ["a photo of <new1> on a beach", "a photo of <new2> on a beach"],
        "a photo of <new1> and <new2> on a beach")
    assert region_prompts("on a beach", regions) == (
        ["<new1>, on a beach", "<new2>, on a beach"], "on a beach")


def test_bad_regions(two_concepts, tmp_path):
    assert parse_region("<new1>:left") == Region("<new1>", "left")
    assert parse_region("a dog: sitting:right") == Region("a dog: sitting", "right")
    for spec in ("<new1>", ":left", "<new1>:"):
        with pytest.raises(DifflabError, match="expected TEXT:MASK"):
            parse_region(spec)
    with pytest.raises(DifflabError, match="mask must be one of"):
        _compose(two_concepts, [Region("<new1>", "middle")])
    with pytest.raises(DifflabError, match="unknown token.*<new3>"):
        _compose(two_concepts, [Region("<new3>", "left")])
    with pytest.raises(DifflabError, match="base-weight"):
        _compose(two_concepts, [Region("<new1>", "left")], base_weight=2.0)


@pytest.mark.parametrize("flag, value", [("guidance", "nan"), ("guidance", "inf"), ("feather", "-1")])
def test_compose_refuses_non_finite_numbers_before_loading(tmp_path, capsys, flag, value):
    from difflab.cli import main

    out = tmp_path / "out"
    argv = ["ti", "compose", str(out), "--model", "not-loaded", "--prompt", "a {}", "--region", "<x>:left",
            f"--{flag}", value]
    assert main(argv) == 2
    # NaN/inf: "must be a finite number"; -1: "must be in [0, ...]"
    err = capsys.readouterr().err
    assert re.search(f"--{flag} must be (a finite number|in )", err) and err.count("\n") == 1, err
    assert not out.exists()
