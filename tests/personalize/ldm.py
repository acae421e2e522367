"""Test helper: write a diffusers SD-v1 pipeline as an original single-file LDM checkpoint + yaml.

Only for testing `load_sd`'s single-file route offline (no real `sd-v1-4.ckpt` exists here). The key
names follow CompVis' LDM modules; `test_single_file.py` checks the result by converting it back with
diffusers' own converters, so a wrong name here fails a test rather than passing silently.
"""

import yaml

RESNET = {"norm1": "in_layers.0", "conv1": "in_layers.2", "norm2": "out_layers.0", "conv2": "out_layers.3",
          "time_emb_proj": "emb_layers.1", "conv_shortcut": "skip_connection"}
VAE_ATTN = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out"}


def _rename(rest: str, table: dict) -> str:
    head, _, tail = rest.partition(".")
    if rest.startswith("to_out.0."):
        head, tail = "to_out.0", rest[len("to_out.0."):]
    return f"{table.get(head, head)}.{tail}"


def _block(prefix: str, i: int, kind: str, rest: str) -> str:
    """LDM blocks hold [resnet, attention, (upsampler)] in slots 0, 1, (2)."""
    return f"{prefix}.{i}.0.{_rename(rest, RESNET)}" if kind == "resnets" else f"{prefix}.{i}.1.{rest}"


def unet_to_ldm(sd: dict, layers: int) -> dict:
    from diffusers.loaders.single_file_utils import DIFFUSERS_TO_LDM_MAPPING

    fixed = DIFFUSERS_TO_LDM_MAPPING["unet"]["layers"]
    has_attn = {k.split(".")[1] for k in sd if k.startswith("up_blocks.") and ".attentions." in k}
    out = {}
    for key, v in sd.items():
        p = key.split(".")
        if key in fixed:
            new = fixed[key]
        elif p[0] == "down_blocks":
            b, kind = int(p[1]), p[2]
            if kind == "downsamplers":
                new = f"input_blocks.{(b + 1) * (layers + 1)}.0.op." + ".".join(p[5:])
            else:
                i, rest = 1 + b * (layers + 1) + int(p[3]), ".".join(p[4:])
                new = _block("input_blocks", i, kind, rest)
        elif p[0] == "mid_block":
            rest = ".".join(p[3:])  # mid_block.<resnets|attentions>.<i>.<rest>
            new = (f"middle_block.{2 * int(p[2])}.{_rename(rest, RESNET)}" if p[1] == "resnets"
                   else f"middle_block.1.{rest}")
        elif p[0] == "up_blocks":
            b, kind = int(p[1]), p[2]
            if kind == "upsamplers":
                slot = 2 if p[1] in has_attn else 1
                new = f"output_blocks.{b * (layers + 1) + layers}.{slot}.conv." + ".".join(p[5:])
            else:
                i, rest = b * (layers + 1) + int(p[3]), ".".join(p[4:])
                new = _block("output_blocks", i, kind, rest)
        else:
            raise KeyError(key)
        out["model.diffusion_model." + new] = v
    return out


def vae_to_ldm(sd: dict, n_blocks: int) -> dict:
    from diffusers.loaders.single_file_utils import DIFFUSERS_TO_LDM_MAPPING

    fixed = DIFFUSERS_TO_LDM_MAPPING["vae"]
    out = {}
    for key, v in sd.items():
        p = key.split(".")
        part = p[0]
        if key in fixed:
            new = fixed[key]
        elif p[1] in ("down_blocks", "up_blocks"):
            i = int(p[2]) if p[1] == "down_blocks" else n_blocks - 1 - int(p[2])
            name = "down" if p[1] == "down_blocks" else "up"
            if p[3] == "resnets":
                rest = ".".join(p[5:]).replace("conv_shortcut", "nin_shortcut")
                new = f"{part}.{name}.{i}.block.{p[4]}.{rest}"
            else:  # downsamplers.0.conv / upsamplers.0.conv
                new = f"{part}.{name}.{i}.{'downsample' if name == 'down' else 'upsample'}.conv.{p[-1]}"
        elif p[1] == "mid_block" and p[2] == "resnets":
            rest = ".".join(p[4:]).replace("conv_shortcut", "nin_shortcut")
            new = f"{part}.mid.block_{int(p[3]) + 1}.{rest}"
        elif p[1] == "mid_block":
            new = f"{part}.mid.attn_1.{_rename('.'.join(p[4:]), VAE_ATTN)}"
            if v.ndim == 2:  # LDM's attention projections are 1x1 convolutions
                v = v[:, :, None, None]
        else:
            raise KeyError(key)
        out["first_stage_model." + new] = v
    return out


def save_ldm_checkpoint(pipe, ckpt_path, yaml_path) -> None:
    """Write `pipe` (a v1-style StableDiffusionPipeline) as an LDM .safetensors + v1-inference-style yaml."""
    from safetensors.torch import save_file

    u, v = pipe.unet.config, pipe.vae.config
    sd = unet_to_ldm(pipe.unet.state_dict(), u.layers_per_block)
    sd.update(vae_to_ldm(pipe.vae.state_dict(), len(v.block_out_channels)))
    prefix = "cond_stage_model.transformer.text_model."
    sd.update({prefix + k: t for k, t in pipe.text_encoder.state_dict().items()})
    save_file({k: t.contiguous() for k, t in sd.items()}, str(ckpt_path))
    ch = u.block_out_channels[0]
    levels = [2 ** i for i, t in enumerate(u.down_block_types) if t.startswith("CrossAttn")]
    config = {"model": {"target": "ldm.models.diffusion.ddpm.LatentDiffusion", "params": {
        "linear_start": 0.00085, "linear_end": 0.012, "timesteps": 1000, "image_size": 64, "channels": 4,
        "conditioning_key": "crossattn", "scale_factor": v.scaling_factor, "cond_stage_trainable": False,
        "unet_config": {"target": "ldm.modules.diffusionmodules.openaimodel.UNetModel", "params": {
            "image_size": 32, "in_channels": 4, "out_channels": 4, "model_channels": ch,
            "attention_resolutions": levels, "num_res_blocks": u.layers_per_block,
            "channel_mult": [c // ch for c in u.block_out_channels], "num_heads": u.attention_head_dim,
            "use_spatial_transformer": True, "transformer_depth": 1, "context_dim": u.cross_attention_dim,
            "legacy": False}},
        "first_stage_config": {"target": "ldm.models.autoencoder.AutoencoderKL", "params": {
            "embed_dim": 4, "ddconfig": {
                "double_z": True, "z_channels": 4, "resolution": 256, "in_channels": 3, "out_ch": 3,
                "ch": v.block_out_channels[0],
                "ch_mult": [c // v.block_out_channels[0] for c in v.block_out_channels],
                "num_res_blocks": v.layers_per_block, "attn_resolutions": [], "dropout": 0.0}}},
        "cond_stage_config": {"target": "ldm.modules.encoders.modules.FrozenCLIPEmbedder"}}}}
    yaml_path.write_text(yaml.safe_dump(config))
