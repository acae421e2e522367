"""`difflab digits info`: checkpoint metadata as JSON; refuses files that are not digit checkpoints."""

import json

import pytest

from difflab.diffusion.schedule import NoiseSchedule
from difflab.digits.info import checkpoint_info
from difflab.errors import DifflabError
from difflab.io import save_checkpoint
from difflab.models.digits import DEFAULT_MODEL, save_digit_model


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


def test_training_records_its_run(tmp_path):
    """A fresh run records legs 1 and its seconds; a resumed one adds a leg and keeps the earlier seconds.

    The clock is driven (every reading advances 1 s) so the check does not depend on the machine's speed:
    the EMA file must carry the final checkpoint's seconds, since a resume continues from those.
    """
    import itertools

    import torch

    from difflab.digits.info import checkpoint_info
    from difflab.io import load_checkpoint
    from difflab.models.unet import UNetConfig
    from difflab.training.config import TrainConfig
    from difflab.training.train import Trainer

    def driven(trainer):
        ticks = itertools.count()
        trainer.clock = lambda: float(next(ticks))
        trainer.leg_start = trainer.clock()
        return trainer

    data = (torch.randint(0, 255, (8, 3, 28, 28), dtype=torch.uint8), torch.arange(8) % 10, torch.arange(8) % 2)
    cfg = TrainConfig(out_dir=str(tmp_path / "run"), steps=2, batch_size=4, ckpt_every=1, warmup_steps=1,
                      unet=UNetConfig(base_channels=8, channel_mults=(1,), num_res_blocks=1), device="cpu")
    driven(Trainer(cfg, data)).fit(progress=False)
    run1 = checkpoint_info(str(tmp_path / "run" / "ema.safetensors"))["train"]
    assert run1["legs"] == 1 and run1["wall_s"] > 0 and run1["steps"] == 2
    saved = load_checkpoint(tmp_path / "run" / "checkpoint.safetensors")[1]["train_run"]
    assert saved["wall_s"] == run1["wall_s"]  # one record for the run's end, whichever file is read
    cfg2 = TrainConfig(**{**cfg.__dict__, "steps": 3})
    second = driven(Trainer(cfg2, data))
    second.resume("latest")
    second.fit(progress=False)
    run2 = checkpoint_info(str(tmp_path / "run" / "ema.safetensors"))["train"]
    assert run2["legs"] == 2 and run2["wall_s"] > run1["wall_s"] and run2["steps"] == 3
