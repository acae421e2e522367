"""Fixtures for the DDIM tests: tiny random models saved to disk and loaded back through our loaders."""

import pytest
import torch

from difflab.diffusion.schedule import NoiseSchedule
from difflab.models.digits import save_digit_model
from difflab.models.unet import ConditionalUNet, UNetConfig

TINY_DIGITS = UNetConfig(base_channels=8, channel_mults=(1, 2), num_res_blocks=1, groups=4)


def randomise(model: torch.nn.Module, seed: int = 0, std: float = 0.05) -> torch.nn.Module:
    """Give zero-initialised layers random weights: a zero output conv would make eps == 0 everywhere."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.ndim > 1 and not p.any():
                p.copy_(torch.randn(p.shape, generator=g) * std)
    return model


@pytest.fixture(scope="session")
def digits_ckpt(tmp_path_factory):
    """Path of a tiny random digit model in our checkpoint format (3x28x28, linear schedule, T=1000)."""
    torch.manual_seed(0)
    model = randomise(ConditionalUNet(TINY_DIGITS).eval())
    path = tmp_path_factory.mktemp("digits") / "tiny_digits.safetensors"
    save_digit_model(path, model, NoiseSchedule())
    return path


@pytest.fixture(scope="session")
def diffusers_dir(tmp_path_factory):
    """A tiny random diffusers UNet2DModel (3x8x8) saved with save_pretrained."""
    pytest.importorskip("diffusers")
    from diffusers import UNet2DModel

    torch.manual_seed(0)
    net = UNet2DModel(sample_size=8, in_channels=3, out_channels=3, block_out_channels=(8, 16),
                      down_block_types=("DownBlock2D", "DownBlock2D"),
                      up_block_types=("UpBlock2D", "UpBlock2D"),
                      layers_per_block=1, norm_num_groups=4, attention_head_dim=None)
    folder = tmp_path_factory.mktemp("diffusers") / "unet"
    net.save_pretrained(folder)
    return folder
