import numpy as np
import pytest
from PIL import Image

from difflab.models.unet import ConditionalUNet, UNetConfig

from .concept_helpers import run

TINY = UNetConfig(base_channels=16, channel_mults=(1, 2), num_res_blocks=1)


@pytest.fixture
def tiny_unet():
    import torch

    torch.manual_seed(0)
    model = ConditionalUNet(TINY).eval()
    # zero-initialised layers (identity blocks, output conv) would hide the conditioning: randomise them
    with torch.no_grad():
        for p in model.parameters():
            if p.ndim > 1 and not p.any():
                p.normal_(0, 0.05)
    return model


@pytest.fixture
def teacher_file(tmp_path, tiny_unet):
    """The tiny UNet saved as a digit-model file (a teacher / personalization base)."""
    from difflab.diffusion.schedule import NoiseSchedule
    from difflab.models.digits import save_digit_model

    path = tmp_path / "teacher.safetensors"
    save_digit_model(path, tiny_unet, NoiseSchedule())
    return path


@pytest.fixture(autouse=True)
def _cache(tmp_path_factory, monkeypatch):
    # synthesised datasets go to a per-session cache, never the user's ~/.cache
    monkeypatch.setenv("DIFFLAB_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


# personalization: the base model, a style folder, a symbol folder, and two concepts learned from them
@pytest.fixture
def base(teacher_file):
    return teacher_file


@pytest.fixture
def style_dir(tmp_path):
    """Eight digits (8 and 9 missing) in odd sizes, one grayscale."""
    folder = tmp_path / "style"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for d in range(8):
        Image.fromarray(rng.integers(0, 255, (40, 36, 3), dtype=np.uint8)).save(folder / f"{d}_a.png")
    Image.fromarray(rng.integers(0, 255, (20, 20), dtype=np.uint8)).save(folder / "3_gray.png")
    return folder


@pytest.fixture
def symbol_dir(tmp_path):
    folder = tmp_path / "symbol"
    folder.mkdir()
    for i in range(3):
        pixels = np.random.default_rng(i).integers(0, 255, (28, 28, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"s{i}.png")
    return folder


@pytest.fixture
def two_concepts(tmp_path, base, style_dir, symbol_dir):
    style = run(style_dir, tmp_path / "style_c", base, eval_per_digit=0).path
    symbol = run(symbol_dir, tmp_path / "symbol_c", base, kind="digit", name="star", domain="mnistm",
                 eval_per_digit=0).path
    return style, symbol


# distillation: a whole tiny run (teacher -> trajectories -> student) shared by test_distill.py and
# test_student_generate.py
TINY_RUN = dict(student_steps=2, teacher_steps=4, trajectories=12, traj_batch=8, steps=4, batch_size=6,
                ckpt_every=2, warmup_steps=1)


@pytest.fixture
def distilled(tmp_path, teacher_file):
    from difflab.training.distill import DistillConfig, distill

    cfg = DistillConfig(out_dir=str(tmp_path / "run"), teacher=str(teacher_file), **TINY_RUN)
    return cfg, distill(cfg, progress=False, log=lambda s: None)
