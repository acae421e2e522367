"""Fixtures for the report tests: a tiny random digit model, random classifiers, a small "real" data
folder (so evaluation needs no synthesised data), a tiny CLIP folder, a fake textual-inversion output,
and one small report built from all of them, shared by the HTML, link, command and browser tests."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from difflab.report.config import ReportConfig

TINY_CFG = dict(per_digit=2, steps=3, batch_size=16, timesteps=(1000, 500, 0), sweep_scales=(0.0, 2.0),
                sweep_per_digit=1, ddim_steps=3, eta_columns=2, interp_num=3, invert_count=2)


def randomise(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Zero-initialised layers get random weights (a zero output conv would predict eps = 0)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.ndim > 1 and not p.any():
                p.copy_(torch.randn(p.shape, generator=g) * 0.05)
    return model.eval()


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory):
    """(path, model, schedule) of a tiny random digit model saved in our checkpoint format."""
    from difflab.diffusion.schedule import NoiseSchedule
    from difflab.models.digits import load_digit_model, save_digit_model
    from difflab.models.unet import ConditionalUNet, UNetConfig

    torch.manual_seed(0)
    net = randomise(ConditionalUNet(UNetConfig(base_channels=8, channel_mults=(1, 2), num_res_blocks=1, groups=4)))
    path = tmp_path_factory.mktemp("model") / "tiny.safetensors"
    save_digit_model(path, net, NoiseSchedule())
    model, schedule, _ = load_digit_model(path)
    return path, model, schedule


@pytest.fixture(scope="session")
def tiny_student(tmp_path_factory, tiny_model):
    """Path of a tiny guidance-input student made from the tiny model, with the metadata of a 4-step student."""
    from difflab.models.digits import save_digit_model
    from difflab.training.distill import make_student

    _, teacher, schedule = tiny_model
    torch.manual_seed(1)
    student = randomise(make_student(teacher), seed=1)  # its w embedding starts at zero: give it weights
    path = tmp_path_factory.mktemp("student") / "tiny_student.safetensors"
    save_digit_model(path, student, schedule, {"student": {"steps": 4, "spacing": "trailing",
                                                           "guidance_range": [1.0, 5.0], "guide": "digit"}})
    return path


@pytest.fixture(scope="session")
def classifiers(tmp_path_factory):
    """{domain: path} of random (untrained) classifiers in the shipped format."""
    from difflab.models.classifier import ClassifierConfig, DigitClassifier
    from difflab.models.digits import save_classifier

    folder = tmp_path_factory.mktemp("classifiers")
    out = {}
    for i, m in enumerate(("mnistm", "svhn")):
        torch.manual_seed(i)
        cfg = ClassifierConfig(width=8)
        net = DigitClassifier(cfg)
        out[m] = folder / f"classifier_{m}.safetensors"
        save_classifier(out[m], net, {"domain": m})
    return out


@pytest.fixture(scope="session")
def data_root(tmp_path_factory):
    """ROOT/{mnistm,svhn}/data/*.png + train.csv/val.csv: 40 random 28x28 images per domain."""
    root = tmp_path_factory.mktemp("data")
    rng = np.random.default_rng(0)
    for m in ("mnistm", "svhn"):
        (root / m / "data").mkdir(parents=True)
        for split in ("train", "val"):
            lines = ["image_name,label"]
            for i in range(20):
                name = f"{split}_{i}.png"
                Image.fromarray(rng.integers(0, 256, (28, 28, 3), dtype=np.uint8)).save(root / m / "data" / name)
                lines.append(f"{name},{i % 10}")
            (root / m / f"{split}.csv").write_text("\n".join(lines) + "\n")
    return root


@pytest.fixture(scope="session")
def zeroshot_inputs(tmp_path_factory):
    """(clip_dir, images_dir, id2label.json) with a tiny random CLIP and 3 classes x 2 images."""
    pytest.importorskip("transformers")
    from difflab.clip.tiny import save_tiny_clip

    base = tmp_path_factory.mktemp("zeroshot")
    clip = save_tiny_clip(base / "clip")
    images = base / "images"
    images.mkdir()
    rng = np.random.default_rng(1)
    for c in range(3):
        for k in range(2):
            Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(images / f"{c}_{k}.png")
    labels = base / "id2label.json"
    labels.write_text(json.dumps({"0": "cat", "1": "dog", "2": "ship"}))
    return clip, images, labels


def make_ti_folder(root, scores: bool = True):
    """A `ti generate` layout: concept 'dog', prompts 0 and 1, three 64x64 images each (+ scores.json)."""
    rng = np.random.default_rng(2)
    for i in range(2):
        folder = root / "dog" / str(i)
        folder.mkdir(parents=True)
        for k in range(3):
            Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(
                folder / f"sourcedog_prompt{i}_{k}.png")
    if scores:
        results = [{"key": "dog", "prompt_index": i, "image": 80.5 - i, "text": 30.25 + i, "baseline": [79, 34],
                    "top": [0, 1, 2], "passed": i == 0} for i in range(2)]
        (root / "scores.json").write_text(json.dumps({"text_weight": 2.5, "top_k": 5, "results": results}))
    return root


@pytest.fixture(scope="session")
def report_run(tmp_path_factory, tiny_model, tiny_student, classifiers, data_root, zeroshot_inputs):
    """One small report with every section: (out_dir, info, config, kwargs)."""
    from difflab.report.run import run_report

    # device named: every caption command then carries --device, and test_report re-runs them with it
    cfg = ReportConfig(**TINY_CFG, device="cpu")
    clip, images, labels = zeroshot_inputs
    out = tmp_path_factory.mktemp("report") / "out"
    kwargs = dict(model_path=tiny_model[0], classifiers=classifiers, data_root=data_root, clip=clip,
                  zeroshot=images, labels=labels, ti=make_ti_folder(tmp_path_factory.mktemp("ti")),
                  student_path=tiny_student)  # not the shipped one: the page must not depend on whether it exists
    # the personalization section shows benchmark results when the checkout has them: none here, so the
    # page is the same in every checkout (tests/report/test_personalize_section.py covers the results)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DIFFLAB_PERSONALIZE_RESULTS", str(out.parent / "no_personalize_results.json"))
        info = run_report(out, cfg, progress=False, **kwargs)
    return out, info, cfg, kwargs
