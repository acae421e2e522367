"""Embedding training: only the new rows move, resume is exact, outputs load in diffusers, bad inputs."""

import numpy as np
import pytest
import torch

from difflab.errors import DifflabError
from difflab.personalize import embeddings as E
from difflab.personalize.train import EmbeddingTrainer, init_vectors, load_concept_images, train

from .helpers import small_config


def _trainer(pipe, photos_dir, **kw):
    cfg = small_config(**kw)
    return EmbeddingTrainer(pipe, load_concept_images(photos_dir, cfg.resolution), cfg)


def test_only_new_rows_change_and_others_stay_bit_identical(pipe, photos_dir):
    before = pipe.text_encoder.get_input_embeddings().weight.detach().clone()
    unet_before = {k: v.clone() for k, v in pipe.unet.state_dict().items()}
    tr = _trainer(pipe, photos_dir, vectors=2, weight_decay=0.5)  # strong decay: would drift every row
    start = tr.vectors()
    for _ in range(3):
        tr.train_step()
    after = pipe.text_encoder.get_input_embeddings().weight.detach()
    assert after.shape[0] == before.shape[0] + 2
    assert torch.equal(after[: before.shape[0]], before)  # every old row, bit for bit
    assert (tr.vectors() - start).abs().amax(dim=1).min() > 1e-4  # both new vectors moved
    assert all(torch.equal(v, unet_before[k]) for k, v in pipe.unet.state_dict().items())
    assert all(p.grad is None for p in pipe.unet.parameters())


def test_init_word_and_multi_token_init(pipe):
    dog = pipe.tokenizer("dog", add_special_tokens=False).input_ids
    assert len(dog) == 1
    v = init_vectors(pipe.tokenizer, pipe.text_encoder, "dog", 3)
    w = pipe.text_encoder.get_input_embeddings().weight
    assert v.shape == (3, w.shape[1]) and all(torch.equal(r, w[dog[0]]) for r in v)
    two = pipe.tokenizer("teddy bear", add_special_tokens=False).input_ids
    assert torch.equal(init_vectors(pipe.tokenizer, pipe.text_encoder, "teddy bear", 2), w[two])
    with pytest.raises(DifflabError, match="is 2 tokens"):
        init_vectors(pipe.tokenizer, pipe.text_encoder, "teddy bear", 3)


def test_resume_continues_exactly(tmp_path, tiny_sd_dir, photos_dir):
    cfg = small_config(steps=4, checkpoint_every=2)
    full = train(tiny_sd_dir, photos_dir, tmp_path / "full", cfg, device="cpu", progress=False)
    half = train(tiny_sd_dir, photos_dir, tmp_path / "half", small_config(steps=2), device="cpu",
                 progress=False)
    assert not torch.equal(half.vectors(), full.vectors())
    resumed = train(tiny_sd_dir, photos_dir, tmp_path / "half", cfg, resume="latest", device="cpu",
                    progress=False)
    assert resumed.step == 4
    assert torch.equal(resumed.vectors(), full.vectors())
    saved = E.read_embeds(tmp_path / "half" / "learned_embeds.safetensors")
    assert list(saved) == ["<new1>"] and torch.equal(saved["<new1>"], full.vectors())


def test_training_output_loads_in_diffusers(tmp_path, tiny_sd_dir, photos_dir):
    from difflab.models.sd import load_sd

    cfg = small_config(vectors=2, validate_every=2, num_validation=2, validation_steps=2, steps=2)
    tr = train(tiny_sd_dir, photos_dir, tmp_path / "out", cfg, device="cpu", progress=False)
    out = tmp_path / "out"
    assert sorted(p.name for p in (out / "validation").iterdir()) == ["step_000002.png"]
    ref = load_sd(tiny_sd_dir, device="cpu")
    ref.load_textual_inversion(str(out))  # finds learned_embeds.safetensors in the folder
    got = E.learned_vectors(ref.tokenizer, ref.text_encoder, "<new1>")
    assert torch.equal(got, tr.vectors()) and got.shape == (2, 32)


def test_same_seed_same_vectors_other_seed_differs(pipe, photos_dir, tiny_sd_dir):
    from difflab.models.sd import load_sd

    runs = []
    for seed in (0, 0, 1):
        tr = _trainer(load_sd(tiny_sd_dir, device="cpu"), photos_dir, seed=seed)
        tr.train_step()
        runs.append(tr.vectors())
    assert torch.equal(runs[0], runs[1]) and not torch.equal(runs[0], runs[2])


def test_concept_images_are_centre_cropped(photos_dir):
    ims = load_concept_images(photos_dir, 64)
    assert len(ims) == 3 and all(a.shape == (64, 64, 3) and a.dtype == np.uint8 for a in ims)


def test_bad_inputs(tmp_path, tiny_sd_dir, photos_dir, pipe):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("no images here")
    with pytest.raises(DifflabError, match="no images"):
        train(tiny_sd_dir, empty, tmp_path / "o1", small_config(), device="cpu")
    with pytest.raises(DifflabError, match="already in the tokenizer vocabulary"):
        _trainer(pipe, photos_dir, token="dog")
    with pytest.raises(DifflabError, match="--what"):
        small_config(what="person").check()
    with pytest.raises(DifflabError, match="multiple of 8"):
        small_config(resolution=60).check()
    with pytest.raises(DifflabError, match="no checkpoint"):
        train(tiny_sd_dir, photos_dir, tmp_path / "o2", small_config(), resume="latest", device="cpu")
    with pytest.raises(DifflabError, match="not a diffusers model folder"):
        train(tmp_path, photos_dir, tmp_path / "o3", small_config(), device="cpu")
    (tmp_path / "o4").mkdir()
    (tmp_path / "o4" / "x").write_text("x")
    with pytest.raises(DifflabError, match="not empty"):
        train(tiny_sd_dir, photos_dir, tmp_path / "o4", small_config(), device="cpu")


@pytest.mark.parametrize("field, value, message", [
    ("lr", float("nan"), "--lr must be a finite number"), ("lr", 0.0, r"--lr must be in \(0, 1\]"),
    ("checkpoint_every", 0, "--checkpoint-every must be at least 1"), ("flip", 1.5, r"--flip must be in \[0, 1\]"),
    ("validate_every", -1, "--validate-every must be at least 0"), ("weight_decay", float("inf"), "finite"),
])
def test_config_refuses_impossible_numbers(field, value, message):
    from difflab.personalize.config import TrainConfig

    with pytest.raises(DifflabError, match=message):
        TrainConfig(**{field: value}).check()


def test_non_finite_loss_stops_before_saving(tmp_path, tiny_sd_dir, photos_dir, monkeypatch):
    monkeypatch.setattr(EmbeddingTrainer, "train_step", lambda self: float("nan"))
    with pytest.raises(DifflabError, match="loss became nan"):
        train(tiny_sd_dir, photos_dir, tmp_path / "out", small_config(steps=4), device="cpu", progress=False)
    assert not (tmp_path / "out" / "learned_embeds.safetensors").exists()
    assert not (tmp_path / "out" / "checkpoint.safetensors").exists()
