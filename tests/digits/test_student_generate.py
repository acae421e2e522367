"""Generating with the guidance-input student and model selection (`--model teacher|student|PATH`): one pass
per step, what a student refuses, generate's number checks, the streamed starting noise (tiny models)."""

import numpy as np
import pytest
import torch
from PIL import Image

from difflab.diffusion.schedule import NoiseSchedule
from difflab.digits.generate import GenerateConfig, generate, make_sampler, resolve, sample_chunks
from difflab.errors import DifflabError
from difflab.models.digits import DEFAULT_MODEL, STUDENT_MODEL, load_digit_model, model_path


def test_student_file_loads_and_generates_in_one_pass_per_step(tmp_path, distilled):
    _, result = distilled
    student, schedule, meta = load_digit_model(result.student_path)
    assert student.config.guidance_input and student.student["steps"] == 2
    assert meta["student"]["guidance_range"] == [1.0, 5.0]
    calls = []

    class Count(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.model = m

        def forward(self, x, *args):
            calls.append(x.shape[0])
            return self.model(x, *args)

    cfg = GenerateConfig(per_digit=1, batch_size=20, bf16=False)
    chunks = list(sample_chunks(Count(student), schedule, cfg, progress=False))
    assert calls == [20, 20] and len(chunks) == 1  # two steps, one B-row pass each: no doubled CFG batch
    generate(tmp_path / "out", student, schedule, cfg, progress=False)
    img = np.asarray(Image.open(tmp_path / "out" / "svhn" / "7_001.png"))
    assert img.shape == (28, 28, 3)


@pytest.mark.parametrize("change, message", [
    (dict(steps=3), "supports --steps 2 only"),
    (dict(sampler="dpmpp-2m"), "deterministic DDIM"),
    (dict(eta=0.5), "deterministic DDIM"),
    (dict(guidance=7.0), r"guidance in \[1, 5\]"),
    (dict(guidance_interval=(100, 500)), "applies to the teacher"),
    (dict(guide="both"), "distilled with --guide digit"),
])
def test_student_refuses_what_it_was_not_distilled_for(distilled, change, message):
    _, result = distilled
    student, _, _ = load_digit_model(result.student_path)
    with pytest.raises(DifflabError, match=message):
        resolve(GenerateConfig(**change), student)


def test_teacher_defaults_resolve_to_todays_sampler(tiny_unet):
    cfg = resolve(GenerateConfig(model="teacher"), tiny_unet)
    assert (cfg.steps, cfg.sampler, cfg.guidance) == (20, "ddim", 3.0)


@pytest.mark.parametrize("sampler, steps", [("ddim", 20), ("ddpm", 20), ("dpmpp-2m", 10), ("unipc", 10)])
def test_teacher_default_steps_follow_the_sampler(tiny_unet, sampler, steps):
    # the solvers draw better digits at 10 steps than at 20 (docs/RESULTS.md §1); an explicit --steps still wins
    assert resolve(GenerateConfig(model="teacher", sampler=sampler), tiny_unet).steps == steps
    assert resolve(GenerateConfig(model="teacher", sampler=sampler, steps=7), tiny_unet).steps == 7
    sampler_obj = make_sampler(GenerateConfig(model="teacher", sampler=sampler), NoiseSchedule(), tiny_unet)
    assert len(sampler_obj.timesteps) == steps


@pytest.mark.parametrize("bad", [dict(guidance=float("nan")), dict(guidance=float("inf")), dict(guidance=-1.0),
                                 dict(steps=0), dict(steps=-5), dict(per_digit=0), dict(eta=float("nan")),
                                 dict(sampler="euler"), dict(batch_size=0)])
def test_generate_config_refuses_bad_numbers(bad, tiny_unet):
    with pytest.raises(DifflabError):
        resolve(GenerateConfig(**bad), tiny_unet)


def test_starting_noise_streams_chunk_by_chunk_as_one_draw(tiny_unet):
    seen = []

    class FirstInputs(torch.nn.Module):
        calls = 0

        def forward(self, x, t, *args):
            if self.calls % 2 == 0:  # the first of each chunk's two steps sees x_T (twice: the CFG batch)
                seen.append(x[: x.shape[0] // 2].clone())
            self.calls += 1
            return torch.zeros_like(x)

    cfg = GenerateConfig(model="teacher", per_digit=3, steps=2, batch_size=7, sampler="ddim")
    sampler_cfg = resolve(cfg, tiny_unet)
    list(sample_chunks(FirstInputs(), NoiseSchedule(), sampler_cfg, progress=False))
    one_shot = torch.randn((60, 3, 28, 28), generator=torch.Generator().manual_seed(0))
    streamed = torch.cat(seen)
    assert torch.equal(streamed, one_shot)


def test_model_names(tmp_path):
    assert model_path("teacher") == DEFAULT_MODEL and model_path("student") == STUDENT_MODEL
    assert model_path(None) == DEFAULT_MODEL
    with pytest.raises(DifflabError, match="neither 'teacher', 'student' nor a readable model file"):
        model_path(tmp_path / "nope.safetensors")
