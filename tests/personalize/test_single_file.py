"""The original single-file route: an LDM checkpoint + v1-inference-style yaml, loaded offline."""

import json

import numpy as np
import pytest
import torch

from difflab.errors import DifflabError
from difflab.models.sd import load_sd, write_sd_v1_config

from .ldm import save_ldm_checkpoint


@pytest.fixture(scope="module")
def ldm_files(tmp_path_factory, tiny_sd_dir):
    folder = tmp_path_factory.mktemp("ldm")
    save_ldm_checkpoint(load_sd(tiny_sd_dir, device="cpu"), folder / "tiny.safetensors", folder / "tiny.yaml")
    return folder / "tiny.safetensors", folder / "tiny.yaml"


def test_test_checkpoint_converts_back_with_diffusers_converters(ldm_files, pipe):
    """Guards the helper: diffusers' own LDM -> diffusers converters give back every tensor."""
    from diffusers.loaders.single_file_utils import convert_ldm_unet_checkpoint, convert_ldm_vae_checkpoint
    from safetensors.torch import load_file

    ckpt = load_file(str(ldm_files[0]))
    for model, convert in ((pipe.unet, convert_ldm_unet_checkpoint), (pipe.vae, convert_ldm_vae_checkpoint)):
        back, ref = convert(ckpt, dict(model.config)), model.state_dict()
        assert set(back) == set(ref) and all(torch.equal(back[k], ref[k]) for k in ref)


@pytest.mark.parametrize("pickled", [False, True])
def test_single_file_pipeline_matches_the_diffusers_folder(ldm_files, pipe, tiny_sd_dir, tmp_path, pickled):
    ckpt, yaml = ldm_files
    if pickled:  # the original sd-v1-4.ckpt layout: a torch pickle {"state_dict": ...}
        from safetensors.torch import load_file

        torch.save({"state_dict": load_file(str(ckpt)), "global_step": 470000}, tmp_path / "tiny.ckpt")
        ckpt = tmp_path / "tiny.ckpt"
    single = load_sd(ckpt, original_config=yaml, config_dir=tiny_sd_dir, device="cpu")
    gen = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    kw = dict(num_inference_steps=3, height=64, width=64, output_type="np")
    a = pipe("a photo of a dog", generator=gen(), **kw).images
    b = single("a photo of a dog", generator=gen(), **kw).images
    assert np.array_equal(a, b)


def test_default_sd_v1_config_and_errors(ldm_files, tmp_path):
    from transformers import CLIPTextConfig, CLIPTokenizer

    out = write_sd_v1_config(tmp_path / "cfg")
    te = CLIPTextConfig.from_pretrained(out / "text_encoder")
    assert (te.hidden_size, te.num_hidden_layers, te.vocab_size) == (768, 12, 49408)
    assert len(CLIPTokenizer.from_pretrained(out / "tokenizer")) == 49408
    assert json.loads((out / "model_index.json").read_text())["unet"] == ["diffusers", "UNet2DConditionModel"]
    ckpt, yaml = ldm_files
    with pytest.raises(DifflabError, match="expected shape.*768"):  # tiny weights vs SD v1's real config
        load_sd(ckpt, original_config=yaml, device="cpu")
    with pytest.raises(DifflabError, match="needs --original-config"):
        load_sd(ckpt, device="cpu")
    with pytest.raises(DifflabError, match="yaml not found"):
        load_sd(ckpt, original_config=tmp_path / "none.yaml", device="cpu")
    with pytest.raises(DifflabError, match="only supported on CUDA"):
        load_sd(ckpt, original_config=yaml, device="cpu", fp16=True)
