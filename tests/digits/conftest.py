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


@pytest.fixture(autouse=True)
def _cache(tmp_path_factory, monkeypatch):
    # synthesised datasets go to a per-session cache, never the user's ~/.cache
    monkeypatch.setenv("DIFFLAB_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))
