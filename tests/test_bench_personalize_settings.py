"""benchmarks/bench_personalize.py's --guidance settings: W[:GUIDE[:KEY=V,...]] parsed into generate's options
(sampler, steps, eta), written back as given, and a one-line refusal of a malformed one."""

import argparse
import sys
from pathlib import Path

import pytest

from difflab.digits.generate import GenerateConfig

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture
def bench(monkeypatch, load_script):
    monkeypatch.syspath_prepend(str(BENCHMARKS))  # its sibling helpers (_malloc, _record)
    malloc = load_script("benchmarks/_malloc.py").MALLOC
    for key, value in malloc.items():  # as if already re-executed: ensure() must not exec the test process
        monkeypatch.setenv(key, value)
    module = load_script("benchmarks/bench_personalize.py")
    yield module
    sys.modules.pop("_malloc", None)
    sys.modules.pop("_record", None)


@pytest.mark.parametrize("text, setting, options", [
    ("3", (3.0, None), {}),
    ("2:both", (2.0, "both"), {}),
    ("2:both:eta=1,steps=50", (2.0, "both", "eta=1,steps=50"), {"eta": 1.0, "steps": 50}),
    ("1.5::sampler=ddpm", (1.5, None, "sampler=ddpm"), {"sampler": "ddpm"}),
])
def test_settings_parse_into_generate_options(bench, text, setting, options):
    parsed = bench.guidance_setting(text)
    assert parsed == setting and bench.sampling_options(parsed) == options
    assert bench.setting_text(parsed) == text.rstrip(":")
    cfg = GenerateConfig(guidance=parsed[0], guide=parsed[1], **bench.sampling_options(parsed))
    assert (cfg.eta, cfg.steps, cfg.sampler) == (options.get("eta", 0.0), options.get("steps"), options.get("sampler"))


@pytest.mark.parametrize("text, message", [
    ("2:maybe", "expected W, W:digit, W:both"),
    ("2:both:eta", "'eta' is not KEY=V"),
    ("2:both:eta=x", "eta takes a number, got 'x'"),
    ("2:both:steps=2.5", "steps takes an integer, got '2.5'"),
    ("2:both:karras=1", "'karras=1' is not KEY=V with KEY one of ['eta', 'sampler', 'steps']"),
    ("2:both:sampler=euler", "unknown sampler 'euler'"),  # generate's own checks, at parse time
    ("2:both:eta=2", "--eta must be in [0, 1], got 2"),
    ("2:both:steps=0", "--steps must be at least 1, got 0"),
])
def test_a_malformed_setting_is_refused_in_one_line(bench, text, message):
    with pytest.raises(argparse.ArgumentTypeError) as err:
        bench.guidance_setting(text)
    assert message in str(err.value) and text in str(err.value) and "\n" not in str(err.value)
