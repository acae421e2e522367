import numpy as np
import pytest
import torch
from PIL import Image

from difflab.cli import main
from difflab.diffusion.sampling import DDIMSampler
from difflab.digits.generate import GenerateConfig, generate
from difflab.digits.reverse import Trajectory, parse_timesteps, reverse_figure, trajectories
from difflab.errors import DifflabError


@pytest.mark.parametrize("sampler,eta", [("ddim", 0.0), ("ddim", 0.5), ("ddpm", 0.0)])
def test_last_frame_is_the_generated_png(tmp_path, tiny_model, sampler, eta):
    _, model, schedule = tiny_model
    # 60 images in chunks of 16: digit 7 is in chunk 1 (mnistm) and chunk 3 (svhn), so earlier chunks
    # are skipped and the per-chunk noise generators must still line up
    cfg = GenerateConfig(per_digit=3, steps=4, batch_size=16, sampler=sampler, eta=eta)
    generate(tmp_path / "gen", model, schedule, cfg, progress=False)
    fig = reverse_figure(model, schedule, cfg, digit=7, timesteps="1000,500,0", progress=False)
    for m in ("mnistm", "svhn"):
        png = np.asarray(Image.open(tmp_path / "gen" / m / "7_001.png"))
        assert np.array_equal(fig.frames[m]["x"][-1], png)
        assert np.array_equal(fig.frames[m]["x0"][-1], png)  # at t = 0 the prediction is the image
        assert not np.array_equal(fig.frames[m]["x"][0], png)  # ... and the first frame is noise
        # a neighbour in the same chunk is a different image: we really picked row 7_001
        other = np.asarray(Image.open(tmp_path / "gen" / m / "7_002.png"))
        assert not np.array_equal(fig.frames[m]["x"][-1], other)
    assert fig.levels == [751, 501, 0]  # 4 leading steps: indices 750, 500, 250, 0 = t 751, 501, 251, 1; 0


def test_trajectory_levels_and_first_state_are_x_T(tiny_model):
    _, model, schedule = tiny_model
    cfg = GenerateConfig(per_digit=1, steps=5, batch_size=7, bf16=False)
    tr = trajectories(model, schedule, cfg, digit=3, domains=("svhn",), progress=False)["svhn"]
    assert tr.levels == [801, 601, 401, 201, 1, 0]
    # x_T is the noise generate draws up front in layout order: svhn digit 3 is item 10 + 3
    x_T = torch.randn((20, 3, 28, 28), generator=torch.Generator().manual_seed(cfg.seed))[13]
    assert torch.equal(tr.x[0], x_T)
    # the predicted x0 at the first step is what one DDIM step from x_T predicts
    assert not torch.allclose(tr.x0[0], tr.x0[-1])
    assert len(tr.x) == len(tr.x0) == len(tr.levels)


def test_nearest_visited_level_for_the_default_settings():
    levels = [t + 1 for t in DDIMSampler(steps=25).timesteps.tolist()] + [0]
    tr = Trajectory(levels, [], [])
    got = [levels[i] for i in tr.nearest([1000, 500, 200, 100, 50, 0])]
    assert got == [961, 481, 201, 81, 41, 0]


@pytest.mark.parametrize("text,msg", [("1001,0", "outside \\[0, 1000\\]"), ("500,-1", "outside"),
                                      ("0,500,100", "not sorted"), ("500,500,0", "repeats"),
                                      ("1000,half", "comma-separated integers"), ("", "integers")])
def test_bad_timesteps(text, msg):
    with pytest.raises(DifflabError, match=msg):
        parse_timesteps(text, 1000)


def test_timesteps_either_order():
    assert parse_timesteps("0,50,1000", 1000) == [1000, 50, 0]


def test_cli_writes_png_and_refuses_bad_input(tmp_path, tiny_model, capsys):
    path = str(tiny_model[0])
    out = tmp_path / "rev.png"
    common = ["--model", path, "--per-digit", "2", "--steps", "3", "--batch-size", "8", "--digit", "4"]
    assert main(["digits", "reverse", str(out), "--domain", "svhn", "--timesteps", "1000,0", *common]) == 0
    img = Image.open(out)
    assert img.width > 2 * 3 * 28 and img.height > 2 * 3 * 28  # two rows of 3x tiles + labels
    assert "t = 667, 0" in capsys.readouterr().out
    cases = [([str(out), *common], "exists"),  # no --overwrite
             ([str(tmp_path / "rev.jpg"), *common], "must be a .png"),
             ([str(tmp_path / "a.png"), "--timesteps", "0,1000,500", *common], "not sorted"),
             ([str(tmp_path / "a.png"), "--timesteps", "2000", *common], "outside"),
             ([str(tmp_path / "a.png"), *common[:-1], "12"], "--digit must be in 0..9")]
    for argv, msg in cases:
        assert main(["digits", "reverse", *argv]) == 2
        err = capsys.readouterr().err
        assert msg in err and err.count("\n") == 1, err
    assert not (tmp_path / "a.png").exists()
    before = out.read_bytes()
    assert main(["digits", "reverse", str(out), "--overwrite", "--domain", "mnistm", *common]) == 0
    assert out.read_bytes() != before  # replaced (one domain now)


def test_cli_replays_generate_with_guide_both(tmp_path, tiny_model, capsys):
    """`digits reverse` takes every `digits generate` flag (one GenerateConfig), so it replays --guide both."""
    from difflab.cli import build_parser
    from difflab.config_args import config_from_args

    path, model, schedule = tiny_model
    flags = ["--model", str(path), "--per-digit", "2", "--steps", "3", "--batch-size", "8", "--guide", "both"]
    assert main(["digits", "generate", str(tmp_path / "gen"), *flags]) == 0
    assert main(["digits", "reverse", str(tmp_path / "r.png"), "--digit", "4", "--timesteps", "1000,0", *flags]) == 0
    capsys.readouterr()
    args = build_parser().parse_args(["digits", "reverse", str(tmp_path / "r.png"), "--digit", "4", *flags])
    cfg = config_from_args(GenerateConfig, args)
    assert cfg.guide == "both"
    fig = reverse_figure(model, schedule, cfg, digit=4, timesteps="1000,0", progress=False)
    digit_only = reverse_figure(model, schedule, GenerateConfig(**{**vars(cfg), "guide": "digit"}), digit=4,
                                timesteps="1000,0", progress=False)
    for m in ("mnistm", "svhn"):
        png = np.asarray(Image.open(tmp_path / "gen" / m / "4_001.png"))
        assert np.array_equal(fig.frames[m]["x"][-1], png)
        assert not np.array_equal(digit_only.frames[m]["x"][-1], png)  # --guide matters for this image
