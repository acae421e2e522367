"""The report's training section: the model's own record, and a time-to-quality curve from its run's
snapshots (judged in the report, the same way as `digits generate` + `digits eval`) or from gate.json."""

import html
import json
import re

import pytest
import torch

from difflab.cli import main
from difflab.diffusion.schedule import NoiseSchedule
from difflab.models.unet import UNetConfig
from difflab.report.config import ReportConfig
from difflab.report.context import Context
from difflab.report.training import training
from difflab.training.config import TrainConfig
from difflab.training.train import Trainer

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A tiny 7-step run whose clock says 10 s per step, with snapshots every 0.5 minutes (steps 3, 6)."""
    out = tmp_path_factory.mktemp("run")
    g = torch.Generator().manual_seed(0)
    data = (torch.randint(0, 256, (16, 3, 28, 28), generator=g, dtype=torch.uint8), torch.arange(16) % 10,
            torch.arange(16) % 2)
    cfg = TrainConfig(out_dir=str(out), steps=7, batch_size=4, ckpt_every=3, bf16=False, warmup_steps=1,
                      snapshot_minutes=0.5, loss_weighting="min-snr",
                      unet=UNetConfig(base_channels=8, channel_mults=(1, 2), num_res_blocks=1, groups=4))
    tr = Trainer(cfg, data)
    tr.clock = lambda: 10.0 * tr.step
    tr.leg_start = tr.clock()
    tr.fit(progress=False)
    return out


def make_ctx(tmp_path, model_file, classifiers, data_root) -> Context:
    from difflab.models.digits import load_digit_model

    model, schedule, _ = load_digit_model(model_file)
    stage = tmp_path / "report"
    stage.mkdir()
    cfg = ReportConfig(per_digit=1, invert_count=1)
    return Context(stage, str(stage), cfg, str(model_file), model, schedule, classifiers, str(data_root),
                   progress=False, report_command="difflab report OUT")


def rows(section: str) -> list[list[str]]:
    tables = re.findall(r"<tbody>(.*?)</tbody>", section, re.S)
    return [[[html.unescape(c) for c in re.findall(r"<td>(.*?)</td>", r)] for r in re.findall(r"<tr>(.*?)</tr>", t)]
            for t in tables]


def test_curve_from_snapshots_matches_the_cli(tmp_path, run_dir, classifiers, data_root, capsys):
    ctx = make_ctx(tmp_path, run_dir / "ema.safetensors", classifiers, data_root)
    section = training(ctx)
    record, curve_rows = rows(section)
    assert ["optimisation steps", "7"] in record and ["training minutes (all legs)", "1.2"] in record
    assert ["loss", "min-snr (gamma 5)"] in record and ["legs (1 = one uninterrupted curve)", "1"] in record
    curve = ctx.numbers["training"]["curve"]
    assert [(p["minutes"], p["step"]) for p in curve] == [(0.5, 3), (1.0, 6)]
    assert [r[:2] for r in curve_rows] == [["0.5", "3"], ["1.0", "6"]]
    assert (ctx.stage / "training" / "time_to_quality.png").stat().st_size > 10_000
    # the report's point for the 1-minute snapshot is what the commands give for that file
    snap, gen = run_dir / "snapshots" / "ema_1min.safetensors", tmp_path / "gen"
    assert main(["digits", "generate", str(gen), "--model", str(snap), "--per-digit", "1", "--seed", "0"]) == 0
    assert main(["digits", "eval", str(gen), "--mnistm-classifier", str(classifiers["mnistm"]),
                 "--svhn-classifier", str(classifiers["svhn"]), "--data-root", str(data_root)]) == 0
    ev = json.loads((gen / "eval.json").read_text())["domains"]
    assert curve[1]["acc"] == {m: ev[m]["acc"] for m in ev}
    assert curve[1]["fd"] == pytest.approx({m: ev[m]["fd_generated_vs_real"] for m in ev})


def test_no_snapshots_says_how_to_get_a_curve(tmp_path, tiny_model, classifiers, data_root):
    path, _, _ = tiny_model
    ctx = make_ctx(tmp_path, path, classifiers, data_root)
    section = training(ctx)
    assert "--snapshot-minutes" in html.unescape(section) and "<img" not in section
    assert ctx.numbers["training"]["curve"] == [] and ["training minutes (all legs)", "unknown"] in rows(section)[0]


def test_recorded_gate_curve_is_drawn_and_named(tmp_path, tiny_model, classifiers, data_root):
    from difflab.models.digits import save_digit_model

    folder = tmp_path / "release"
    folder.mkdir()
    _, model, _ = tiny_model
    save_digit_model(folder / "ema.safetensors", model, NoiseSchedule())
    point = {"minutes": 10.0, "step": 600, "acc": {"mnistm": 0.5, "svhn": 0.25}, "fd": {"mnistm": 3.0, "svhn": 4.0},
             "fd_real_vs_real": {"mnistm": 0.4, "svhn": 0.4}}
    (folder / "gate.json").write_text(json.dumps({"curve": [point]}))
    ctx = make_ctx(tmp_path, folder / "ema.safetensors", classifiers, data_root)
    section = html.unescape(training(ctx))
    assert "gate.json" in section and ["10.0", "600", "0.500", "0.250", "3.000", "4.000"] in rows(section)[1]
