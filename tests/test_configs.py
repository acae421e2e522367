"""Every config dataclass checks its own fields when it is built, so the Python API refuses what the CLI
refuses (tests/test_flag_walk.py walks the flags), with the same one-line message naming the flag."""

import dataclasses
import math

import pytest

from difflab.clip.config import ZeroShotConfig
from difflab.ddim.config import DDIMConfig
from difflab.digits.generate import GenerateConfig
from difflab.errors import DifflabError
from difflab.models.unet import UNetConfig
from difflab.personalize.config import TrainConfig as TITrainConfig
from difflab.report.config import ReportConfig

NAN, INF = math.nan, math.inf

CASES = [
    (GenerateConfig, {"guidance": NAN}, "--guidance must be a finite number"),
    (GenerateConfig, {"guidance": INF}, "--guidance must be a finite number"),
    (GenerateConfig, {"guidance": 1e30}, r"--guidance must be in \[0, 100\]"),
    (GenerateConfig, {"per_digit": 0}, "--per-digit must be at least 1"),
    (GenerateConfig, {"per_digit": 10**30}, "--per-digit must be at most"),
    (GenerateConfig, {"steps": 0}, "--steps must be at least 1"),
    (GenerateConfig, {"eta": NAN}, "--eta must be a finite number"),
    (GenerateConfig, {"seed": -1}, "--seed must be at least 0"),
    (GenerateConfig, {"batch_size": 0}, "--batch-size must be at least 1"),
    (DDIMConfig, {"eta": NAN}, "--eta must be a finite number"),
    (DDIMConfig, {"eta": 1.5}, r"--eta must be in \[0, 1\]"),
    (DDIMConfig, {"steps": 0}, "--steps must be at least 1"),
    (DDIMConfig, {"offset": -1}, "--offset must be at least 0"),
    (DDIMConfig, {"invert_iters": -1}, "--invert-iters must be at least 0"),
    (DDIMConfig, {"seed": 2**32}, "--seed must be at least 0 and below 2"),
    (DDIMConfig, {"clip_x0": 0.0}, r"--clip-x0 must be in \(0, inf\)"),
    (DDIMConfig, {"beta_start": NAN}, "--beta-start must be a finite number"),
    (DDIMConfig, {"beta_end": 1.0}, r"--beta-end must be in \(0, 1\)"),
    (DDIMConfig, {"beta_start": 0.02, "beta_end": 0.01}, "must not exceed --beta-end"),
    (DDIMConfig, {"train_timesteps": 0}, "--train-timesteps must be at least 1"),
    (ReportConfig, {"guidance": NAN}, "--guidance must be a finite number"),
    (ReportConfig, {"invert_guidance": -1.0}, r"--invert-guidance must be in \[0, 100\]"),
    (ReportConfig, {"per_digit": 0}, "--per-digit must be at least 1"),
    (ReportConfig, {"interp_num": 1}, "--interp-num must be at least 2"),
    (ReportConfig, {"digit": 10}, r"--digit must be in 0\.\.9"),
    (ReportConfig, {"etas": (0.0, NAN)}, "--etas must be a finite number"),
    (ReportConfig, {"sweep_scales": (1.0, INF)}, "--sweep-scales must be a finite number"),
    (ReportConfig, {"timesteps": (500, -1)}, "--timesteps must be at least 0"),
    (ReportConfig, {"invert_count": 11}, "exceeds --per-digit"),
    (ZeroShotConfig, {"batch_size": 0}, "--batch-size must be at least 1"),
    (ZeroShotConfig, {"top_k": 10**30}, "--top-k must be at most"),
    (ZeroShotConfig, {"n_cases": -1}, "--cases must be at least 0"),
    (UNetConfig, {"base_channels": 0}, "--base-channels must be at least 1"),
    (UNetConfig, {"base_channels": 12}, "--base-channels must be a multiple of 4"),
    (UNetConfig, {"channel_mults": (1, 0)}, "--channel-mults must be at least 1"),
    (UNetConfig, {"channel_mults": (1, 2, 2, 2)}, "1 to 3 levels"),
    (UNetConfig, {"attention_levels": (3,)}, "--attention-levels must be at most 2"),
    (UNetConfig, {"num_res_blocks": 0}, "--num-res-blocks must be at least 1"),
    (TITrainConfig, {"lr": NAN}, "--lr must be a finite number"),
    (TITrainConfig, {"steps": 0}, "--steps must be at least 1"),
    (TITrainConfig, {"seed": -1}, "--seed must be at least 0"),
    (TITrainConfig, {"weight_decay": 1e30}, "must be below 1"),
]


def make(cls, **kw):
    if cls is ZeroShotConfig:
        return cls("images", "model", **kw)
    return cls(**kw)


@pytest.mark.parametrize("cls, change, message", CASES,
                         ids=[f"{c.__name__}-{'-'.join(map(str, ch))}" for c, ch, _ in CASES])
def test_config_refuses_when_built(cls, change, message):
    with pytest.raises(DifflabError, match=message) as info:
        make(cls, **change)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("cls", [GenerateConfig, DDIMConfig, ReportConfig, ZeroShotConfig, UNetConfig, TITrainConfig])
def test_defaults_are_valid_and_replace_checks_again(cls):
    cfg = make(cls)  # the CLI takes its defaults from these: they must pass their own check
    field = {GenerateConfig: "batch_size", DDIMConfig: "batch_size", ReportConfig: "batch_size",
             ZeroShotConfig: "batch_size", UNetConfig: "base_channels", TITrainConfig: "batch_size"}[cls]
    with pytest.raises(DifflabError, match="must be at least 1"):
        dataclasses.replace(cfg, **{field: 0})  # code that fixes fields later (replace) is checked too
