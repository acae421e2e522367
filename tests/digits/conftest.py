import pytest

from difflab.models.unet import ConditionalUNet, UNetConfig

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
