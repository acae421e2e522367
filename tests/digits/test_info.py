"""`difflab digits info`: checkpoint metadata as JSON; refuses files that are not digit checkpoints."""

import json

import pytest

from difflab.digits.info import checkpoint_info
from difflab.digits.model_io import DEFAULT_MODEL, save_digit_model
from difflab.errors import DifflabError
from difflab.io import save_checkpoint
from difflab.schedule import NoiseSchedule


def test_shipped_teacher_history():
    info = checkpoint_info("teacher")
    assert info["path"] == str(DEFAULT_MODEL) and len(info["sha256"]) == 64
    assert info["unet"]["base_channels"] == 32 and info["schedule"]["num_train_timesteps"] == 1000
    t = info["train"]
    assert t["steps"] == 9000 and t["legs"] == 3 and t["wall_s"] == 82 * 60 + 5957
    assert t["source"] == "docs/RESULTS.md" and "MNIST-M" in t["data"]
    json.dumps(info)  # JSON-ready


def test_recorded_run_wins(tmp_path, tiny_unet):
    path = tmp_path / "m.safetensors"
    run = {"wall_s": 12.5, "legs": 1, "machine": "test", "date": "2026-11-27"}
    save_digit_model(path, tiny_unet, NoiseSchedule(), {"train": {"steps": 5, "train_size": 10, "seed": 1},
                                                        "step": 5, "train_run": run})
    t = checkpoint_info(str(path))["train"]
    assert (t["steps"], t["wall_s"], t["legs"], t["machine"]) == (5, 12.5, 1, "test") and "source" not in t


def test_not_a_digit_checkpoint(tmp_path):
    other = tmp_path / "x.safetensors"
    import torch

    save_checkpoint(other, {"a": torch.zeros(1)}, {"kind": "something-else"})
    with pytest.raises(DifflabError, match="not a difflab digit model checkpoint"):
        checkpoint_info(str(other))
    text = tmp_path / "t.safetensors"
    text.write_text("hello")
    with pytest.raises(DifflabError):
        checkpoint_info(str(text))
