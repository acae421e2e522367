"""`digits generate --concept` (issue 12): layouts, guidance defaults, students, composition and broken
concept folders, on a tiny UNet saved as the base model."""

import json

import pytest
import torch

from difflab.concepts.concept import (
    apply_concepts,
    base_digest,
    load_concept,
    load_concepts,
    load_with_concepts,
    student_teacher_digest,
)
from difflab.diffusion.schedule import NoiseSchedule
from difflab.digits.generate import GenerateConfig, generate, resolve
from difflab.errors import DifflabError
from difflab.io import save_checkpoint
from difflab.models.digits import SHIPPED_TEACHER, STUDENT_MODEL, load_digit_model, save_digit_model
from difflab.training.distill import make_student

from .concept_helpers import files_in, main, run, sha256


def test_generate_concept_layouts(tmp_path, base, two_concepts):
    style, symbol = two_concepts
    common = ["--model", str(base), "--per-digit", "2", "--steps", "2"]
    assert main(["digits", "generate", str(tmp_path / "a"), *common, "--concept", str(style)]) == 0
    assert files_in(tmp_path / "a") == sorted([f"wavy/{d}_{k:03d}.png" for d in range(10) for k in (1, 2)]
                                            + ["wavy_grid.png"])
    assert main(["digits", "generate", str(tmp_path / "b"), *common, "--concept", str(symbol)]) == 0
    assert files_in(tmp_path / "b") == [f"{m}/star_{k:03d}.png" for m in ("mnistm", "svhn") for k in (1, 2)]
    assert main(["digits", "generate", str(tmp_path / "c"), *common, "--concept", str(symbol),
                 "--concept", str(style)]) == 0
    assert files_in(tmp_path / "c") == ["wavy/star_001.png", "wavy/star_002.png"]


def test_a_lora_style_on_the_teacher_guides_digit_and_domain_by_default(tmp_path, base, style_dir, two_concepts,
                                                                        tiny_unet):
    """--guide's default: 'both' for a teacher drawing a LoRA style (the measured better setting), 'digit' for
    a ti style, a symbol alone, no concept and a student (the way it was distilled); a given --guide is kept.
    The default is in effect end to end: the style's images equal --guide both's, not --guide digit's."""
    ti_style, symbol = two_concepts
    style = run(style_dir, tmp_path / "lora_style", base, method="lora", eval_per_digit=0).path
    teacher = load_digit_model(base)[0]

    def guide(model, **kw):
        return resolve(GenerateConfig(device="cpu", **kw), model).guide

    assert guide(teacher, concepts=[style]) == "both" and guide(teacher, concepts=[symbol, style]) == "both"
    assert guide(apply_concepts(teacher, load_concepts([style])), concepts=[style]) == "both"
    assert guide(teacher, concepts=[ti_style]) == "digit" and guide(teacher, concepts=[symbol]) == "digit"
    assert guide(teacher) == "digit" and guide(teacher, concepts=[style], guide="digit") == "digit"
    student = make_student(tiny_unet)
    student.student = {"steps": 4, "spacing": "trailing", "guidance_range": [1.0, 5.0], "guide": "digit"}
    assert guide(student, concepts=[style]) == "digit"
    common = ["--model", str(base), "--per-digit", "1", "--steps", "2", "--concept", str(style)]
    for name, extra in (("default", []), ("both", ["--guide", "both"]), ("digit", ["--guide", "digit"])):
        assert main(["digits", "generate", str(tmp_path / name), *common, *extra]) == 0
    files = files_in(tmp_path / "default" / "wavy")
    assert len(files) == 10
    same = [sha256(tmp_path / "default" / "wavy" / f) == sha256(tmp_path / "both" / "wavy" / f) for f in files]
    other = [sha256(tmp_path / "default" / "wavy" / f) == sha256(tmp_path / "digit" / "wavy" / f) for f in files]
    assert all(same) and not any(other)


def test_generate_without_concepts_is_unchanged_by_them(tmp_path, base, two_concepts, tiny_unet):
    """A concept applied but not asked for draws the shipped layout exactly as the base model does."""
    cfg = GenerateConfig(per_digit=1, steps=2, device="cpu")
    generate(tmp_path / "plain", tiny_unet, NoiseSchedule(), cfg, progress=False)
    adapted = apply_concepts(tiny_unet, load_concepts(two_concepts))
    generate(tmp_path / "adapted", adapted, NoiseSchedule(), cfg, progress=False)
    files = files_in(tmp_path / "plain")
    assert files == files_in(tmp_path / "adapted") and len(files) == 22
    assert all(sha256(tmp_path / "plain" / f) == sha256(tmp_path / "adapted" / f) for f in files)


def test_concept_combinations_and_other_commands(tmp_path, base, two_concepts, style_dir, capsys):
    style, symbol = two_concepts
    other_style = run(style_dir, tmp_path / "other", base, name="dots", eval_per_digit=0).path
    with pytest.raises(DifflabError, match="at most one domain concept"):
        load_concepts([style, other_style])
    for command in (["digits", "reverse", str(tmp_path / "r.png")], ["digits", "sweep", str(tmp_path / "s")],
                    ["demo", str(tmp_path / "d")]):
        assert main([*command, "--model", str(base), "--concept", str(style)]) == 2
        assert "draws the shipped domains and digits only" in capsys.readouterr().err
    assert not any((tmp_path / n).exists() for n in ("r.png", "s", "d"))


def test_student_takes_its_teachers_ti_and_lora_concepts(tmp_path, base, two_concepts, style_dir, tiny_unet):
    style, _ = two_concepts
    student_meta = {"steps": 4, "spacing": "trailing", "guidance_range": [1.0, 5.0], "guide": "digit"}
    student = tmp_path / "student.safetensors"
    save_digit_model(student, make_student(tiny_unet), NoiseSchedule(),
                     {"student": {**student_meta, "teacher": str(base)}})
    out = tmp_path / "out"
    assert main(["digits", "generate", str(out), "--model", str(student), "--per-digit", "1",
                 "--concept", str(style)]) == 0
    assert len(list((out / "wavy").iterdir())) == 10
    orphan = tmp_path / "orphan.safetensors"
    save_digit_model(orphan, make_student(tiny_unet), NoiseSchedule(), {"student": student_meta})
    with pytest.raises(DifflabError, match="does not record its teacher"):
        apply_concepts(load_digit_model(orphan)[0], [load_concept(style)])
    ft = run(style_dir, tmp_path / "ft", base, method="finetune", eval_per_digit=0).path
    with pytest.raises(DifflabError, match="cannot be applied to a student"):
        apply_concepts(load_digit_model(student)[0], [load_concept(ft)])
    assert base_digest(load_digit_model(base)[0]) == load_concept(style).meta["base_sha256"]


def test_students_of_the_shipped_teacher_check_concepts_against_it(tmp_path, tiny_unet):
    """`digits distill` without --teacher records "shipped"; a release records the assets/ path (any checkout):
    both, and the shipped student, resolve to the shipped teacher's digest (the old student said "shipped"
    and refused every concept)."""
    shipped = base_digest(load_digit_model(None)[0])
    meta = {"steps": 4, "spacing": "trailing", "guidance_range": [1.0, 5.0], "guide": "digit"}
    for ref in (SHIPPED_TEACHER, "/elsewhere/src/difflab/assets/digits_unet.safetensors"):
        path = tmp_path / "student.safetensors"
        save_digit_model(path, make_student(tiny_unet), NoiseSchedule(), {"student": {**meta, "teacher": ref}})
        assert student_teacher_digest(load_digit_model(path)[0]) == shipped
    assert student_teacher_digest(load_digit_model(STUDENT_MODEL)[0]) == shipped
    save_digit_model(path, make_student(tiny_unet), NoiseSchedule(),
                     {"student": {**meta, "teacher": str(tmp_path / "gone.safetensors")}})
    with pytest.raises(DifflabError, match="not a readable file"):
        student_teacher_digest(load_digit_model(path)[0])


def test_load_with_concepts_then_generate(tmp_path, base, two_concepts):
    style, symbol = two_concepts
    model, schedule, concepts = load_with_concepts(str(base), [style])
    assert [c.name for c in concepts] == ["wavy"] and model.concept_rows["domain"] == {"wavy": 3}
    cfg = GenerateConfig(per_digit=1, steps=2, device="cpu", concepts=[tmp_path / "style_c" / ".." / "style_c"])
    assert cfg.concepts == (str(tmp_path / "style_c" / ".." / "style_c"),)  # a list of Paths: one form
    generate(tmp_path / "a", model, schedule, cfg, progress=False)  # the model carries them already: as is
    assert len(list((tmp_path / "a" / "wavy").iterdir())) == 10
    with pytest.raises(DifflabError, match="carries other concepts"):
        generate(tmp_path / "b", model, schedule, GenerateConfig(concepts=[str(symbol)]), progress=False)
    assert not (tmp_path / "b").exists()


def test_two_lora_concepts_add_up(tmp_path, base, style_dir, symbol_dir):
    pytest.importorskip("peft")
    style = load_concept(run(style_dir, tmp_path / "s", base, method="lora", eval_per_digit=0).path)
    symbol = load_concept(run(symbol_dir, tmp_path / "y", base, kind="digit", name="star", domain="svhn",
                              method="lora", eval_per_digit=0).path)
    model, _, _ = load_digit_model(base)
    key = "down.0.0.conv1.weight"
    w0 = model.state_dict()[key]
    deltas = [apply_concepts(model, [c]).state_dict()[key] - w0 for c in (style, symbol)]
    both = apply_concepts(model, [style, symbol])
    assert all(d.abs().max() > 0 for d in deltas)
    assert torch.allclose(both.state_dict()[key] - w0, deltas[0] + deltas[1], atol=1e-6)
    assert both.concept_rows == {"domain": {"wavy": 3}, "digit": {"star": 11}}


@pytest.mark.parametrize("damage, message", [
    ("no-json", "concept file not found"),
    ("bad-json", "not valid JSON"),
    ("format", "not a difflab digit concept"),
    ("kind", "kind must be one of"),
    ("lora-config", "needs its LoRA config"),
    ("row-shape", "expected a float tensor 'row'"),
    ("adapter-shape", "adapters do not fit this model"),
])
def test_broken_concept_folder_is_one_line(tmp_path, base, style_dir, capsys, damage, message):
    pytest.importorskip("peft")
    folder = run(style_dir, tmp_path / "c", base, method="lora", eval_per_digit=0).path
    capsys.readouterr()  # the missing digits' line
    meta_path = folder / "concept.json"
    meta = json.loads(meta_path.read_text())
    if damage == "no-json":
        meta_path.unlink()
    elif damage == "bad-json":
        meta_path.write_text("{")
    elif damage in ("format", "kind"):
        meta_path.write_text(json.dumps({**meta, damage: "other"}))
    elif damage == "lora-config":
        meta_path.write_text(json.dumps({**meta, "lora": {"r": 0}}))
    elif damage == "row-shape":
        save_checkpoint(folder / "embedding.safetensors", {"row": torch.zeros(5)}, {})
    elif damage == "adapter-shape":
        lora = load_concept(folder).lora
        key = next(k for k in lora if "lora_A" in k)
        save_checkpoint(folder / "adapter_model.safetensors", {**lora, key: torch.zeros(1, 1)}, {})
    out = tmp_path / "out"
    assert main(["digits", "generate", str(out), "--model", str(base), "--concept", str(folder)]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1 and not out.exists()
