"""`digits personalize` and `digits generate --concept` (issue 12) on a tiny UNet saved as the base model."""

import hashlib
import json
import shutil
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from difflab.cli import main as cli_main
from difflab.concepts import concept as cmod
from difflab.concepts import personalize as pmod
from difflab.concepts.concept import (
    apply_concepts,
    base_digest,
    base_state_dict,
    extend_tables,
    load_concept,
    load_concepts,
)
from difflab.concepts.personalize import PersonalizeConfig, personalize
from difflab.diffusion.schedule import NoiseSchedule
from difflab.errors import DifflabError
from difflab.io import tensor_digest
from difflab.models.digits import load_digit_model, save_digit_model


def main(argv):
    try:
        return cli_main(argv)
    except SystemExit as e:
        return e.code


def sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def base(teacher_file):
    return teacher_file


@pytest.fixture
def style_dir(tmp_path):
    """Eight digits (8 and 9 missing) in odd sizes, one grayscale."""
    folder = tmp_path / "style"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for d in range(8):
        Image.fromarray(rng.integers(0, 255, (40, 36, 3), dtype=np.uint8)).save(folder / f"{d}_a.png")
    Image.fromarray(rng.integers(0, 255, (20, 20), dtype=np.uint8)).save(folder / "3_gray.png")
    return folder


@pytest.fixture
def symbol_dir(tmp_path):
    folder = tmp_path / "symbol"
    folder.mkdir()
    for i in range(3):
        pixels = np.random.default_rng(i).integers(0, 255, (28, 28, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"s{i}.png")
    return folder


def make_cfg(images, out, base, **kw):
    settings = dict(kind="domain", name="wavy", method="ti", steps=4, batch_size=6, model=str(base),
                    eval_per_digit=1, device="cpu", lr=0.05)
    settings.update(kw)
    if settings["method"] != "ti":
        settings.setdefault("prior_weight", 0.0)  # the recipes' data is tested with a stand-in below
    return PersonalizeConfig(images_dir=str(images), out_dir=str(out), **settings)


def run(images, out, base, **kw):
    return personalize(make_cfg(images, out, base, **kw), progress=False)


def outputs(model, digits, domains, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(len(digits), 3, 28, 28, generator=g)
    t = torch.tensor([10, 500, 999, 250, 700, 1][:len(digits)])
    with torch.no_grad():
        return model(x, t, torch.tensor(digits), torch.tensor(domains))


def test_extended_tables_give_the_base_outputs_for_old_labels(tiny_unet):
    ext = extend_tables(tiny_unet, new_domains=1, new_digits=1)
    digits, domains = [0, 5, 10, 9, 10, 3], [0, 1, 2, 2, 0, 1]  # nulls included: CFG's unconditional branch
    assert torch.equal(outputs(ext, digits, domains), outputs(tiny_unet, digits, domains))
    assert ext.domain_emb.weight.shape[0] == 4 and ext.digit_emb.weight.shape[0] == 12
    assert torch.equal(ext.domain_emb.weight[3], tiny_unet.domain_emb.weight[2])  # starts as the null row
    assert torch.equal(base_state_dict(ext)["digit_emb.weight"], tiny_unet.digit_emb.weight)


def test_ti_trains_only_the_new_row(tmp_path, base, style_dir, capsys):
    before = sha256(base)
    r = run(style_dir, tmp_path / "c", base)
    assert "digit(s) 8, 9" in capsys.readouterr().err  # missing digits: one line, not an error
    assert sorted(p.name for p in r.path.iterdir()) == ["concept.json", "embedding.safetensors"]
    assert (r.path / "embedding.safetensors").stat().st_size < 4096
    assert sha256(base) == before
    model, _, _ = load_digit_model(base)
    adapted = apply_concepts(model, [load_concept(r.path)])
    assert tensor_digest(base_state_dict(adapted)) == tensor_digest(model.state_dict()) == r.meta["base_sha256"]
    row = adapted.domain_emb.weight[3]
    assert not torch.equal(row, model.domain_emb.weight[2])  # it moved from its start, the null row
    assert adapted.concept_rows == {"domain": {"wavy": 3}, "digit": {}}
    m = r.meta
    assert (m["name"], m["kind"], m["method"], m["steps"], m["seed"], m["rank"]) == ("wavy", "domain", "ti", 4, 0, None)
    assert m["images"] == {"count": 9, "folder": str(style_dir), "digits": list(range(8)), "missing_digits": [8, 9]}
    assert m["embedding_dim"] == 64 and m["wall_s"] >= 0 and m["lr"] == 0.05 and m["prior_weight"] == 0
    assert m["augment_shift"] == 0
    assert set(m["retained_acc"]) == {"mnistm", "svhn"} and all(0 <= a <= 1 for a in m["retained_acc"].values())


def test_same_seed_same_concept(tmp_path, base, style_dir):
    rows = [load_concept(run(style_dir, tmp_path / f"c{i}", base, seed=s, eval_per_digit=0).path).row
            for i, s in enumerate((3, 3, 4))]
    assert torch.equal(rows[0], rows[1]) and not torch.equal(rows[0], rows[2])


def test_lora_adapters_in_peft_format_round_trip(tmp_path, base, symbol_dir):
    peft = pytest.importorskip("peft")
    before = sha256(base)
    cfg = make_cfg(symbol_dir, tmp_path / "c", base, kind="digit", name="star", domain="svhn", method="lora",
                   rank=2)
    model, _, meta = load_digit_model(base)
    g = torch.Generator().manual_seed(0)
    trained, params = pmod.build_model(model, cfg, g)
    draw = pmod.make_batches(pmod.read_images(cfg), None, cfg, trained, pmod._drop_rates(meta), g)
    pmod.fit(trained, params, NoiseSchedule(), draw, cfg, g, progress=False)
    assert all("lora_" in n or n.endswith("_emb.extra") for n, p in trained.named_parameters() if p.requires_grad)
    saved = pmod._concept_tensors(trained, cfg)
    assert saved["lora"] and all(".lora_A." in k or ".lora_B." in k for k in saved["lora"])
    assert any(v.abs().sum() > 0 for k, v in saved["lora"].items() if "lora_B" in k)  # the adapters trained

    r = run(symbol_dir, tmp_path / "c", base, kind="digit", name="star", domain="svhn", method="lora", rank=2)
    concept = load_concept(r.path)
    assert torch.equal(concept.row, saved["row"]) and concept.lora.keys() == saved["lora"].keys()
    assert all(torch.equal(concept.lora[k], saved["lora"][k]) for k in saved["lora"])  # same seed: same adapters
    assert r.meta["lora"]["r"] == 2 and r.meta["rank"] == 2 and sha256(base) == before
    # peft reads them back into a fresh copy: exactly the trained model's outputs
    fresh = extend_tables(model, new_digits=1)
    fresh = peft.inject_adapter_in_model(peft.LoraConfig(**cmod.lora_config_kwargs(concept)), fresh)
    peft.set_peft_model_state_dict(fresh, concept.lora)
    with torch.no_grad():
        fresh.digit_emb.extra[0] = concept.row
    digits, domains = [11, 11, 3, 10], [0, 1, 0, 2]
    expected = outputs(trained, digits, domains)
    assert torch.equal(outputs(fresh.eval(), digits, domains), expected)
    merged = apply_concepts(model, [concept])  # as `digits generate` draws: adapters merged into the weights
    assert torch.allclose(outputs(merged, digits, domains), expected, atol=1e-5)
    assert not any("lora" in k for k in merged.state_dict())


def test_finetune_concept_with_prior_preservation(tmp_path, base, style_dir, monkeypatch):
    seen = []

    def fake_prior():  # the recipes' images are slow to synthesise in a test: a stand-in of the same shape
        seen.append(1)
        g = torch.Generator().manual_seed(1)
        return torch.rand(8, 3, 28, 28, generator=g) * 2 - 1, torch.arange(8) % 10, torch.arange(8) % 2

    monkeypatch.setattr(pmod, "prior_data", fake_prior)
    r = run(style_dir, tmp_path / "c", base, method="finetune", prior_weight=0.5, lr=1e-3)
    assert seen and r.meta["prior_weight"] == 0.5
    assert (r.path / "unet.safetensors").is_file()
    model, _, _ = load_digit_model(base)
    adapted = apply_concepts(model, [load_concept(r.path)])
    assert not torch.equal(outputs(adapted, [1, 2], [0, 1]), outputs(model, [1, 2], [0, 1]))  # all weights moved


def test_row_lr_sets_the_new_rows_rate_alone(tmp_path, base, style_dir):
    """--row-lr: lora and finetune default to DEFAULT_ROW_LR (given explicitly, the concept is bit for bit the
    default one); at --lr the row moves less than at the default; near 0 the row stays at its start (the
    null row) while the other weights still train at --lr."""
    kw = dict(method="finetune", lr=1e-3, eval_per_digit=0)
    plain = run(style_dir, tmp_path / "plain", base, **kw)
    assert plain.meta["row_lr"] == pmod.DEFAULT_ROW_LR["finetune"] == 3e-2 and plain.meta["lr"] == 1e-3
    plain = load_concept(plain.path)
    same = load_concept(run(style_dir, tmp_path / "same", base, row_lr=3e-2, **kw).path)
    assert torch.equal(same.row, plain.row) and all(torch.equal(same.unet[k], plain.unet[k]) for k in plain.unet)
    model, _, _ = load_digit_model(base)
    null_row = model.domain_emb.weight[2]
    even = load_concept(run(style_dir, tmp_path / "even", base, row_lr=1e-3, **kw).path)
    assert 0 < (even.row - null_row).norm() < (plain.row - null_row).norm()
    frozen = run(style_dir, tmp_path / "frozen", base, row_lr=1e-12, **kw)
    assert frozen.meta["row_lr"] == 1e-12
    frozen = load_concept(frozen.path)
    assert (frozen.row - null_row).abs().max() < 1e-6 < (plain.row - null_row).abs().max()
    moved = [k for k in plain.unet if not torch.equal(frozen.unet[k], model.state_dict()[k])]
    assert len(moved) > len(plain.unet) // 2  # the rest of the network trained as before


def test_prior_batches_mix_old_domains(base, style_dir):
    cfg = make_cfg(style_dir, "unused", base, method="finetune", prior_weight=0.5, batch_size=8)
    model, _, meta = load_digit_model(base)
    prior = (torch.zeros(4, 3, 28, 28), torch.tensor([1, 2, 3, 4]), torch.tensor([0, 1, 0, 1]))
    drops = pmod._drop_rates(meta)
    draw = pmod.make_batches(pmod.read_images(cfg), prior, cfg, extend_tables(model, 1), drops,
                             torch.Generator().manual_seed(0))
    seen_new = seen_old = 0
    for _ in range(20):
        x0, digits, domains = draw()
        assert x0.shape == (8, 3, 28, 28)
        seen_new += int((domains == 3).sum())
        seen_old += int(((domains == 0) | (domains == 1)).sum())
    assert 50 <= seen_old <= 80 and 50 <= seen_new <= 80  # half of each batch, less the nulls dropped in


def test_augment_shift_moves_only_the_concept_images(base, style_dir):
    model, _, meta = load_digit_model(base)
    prior = (torch.zeros(4, 3, 28, 28), torch.tensor([1, 2, 3, 4]), torch.tensor([0, 1, 0, 1]))

    def batches(shift):
        cfg = make_cfg(style_dir, "unused", base, method="lora", prior_weight=0.5, batch_size=8, augment_shift=shift)
        data = pmod.read_images(cfg)
        draw = pmod.make_batches(data, prior, cfg, extend_tables(model, 1), pmod._drop_rates(meta),
                                 torch.Generator().manual_seed(0))
        return data, [draw() for _ in range(10)]

    data, plain = batches(0)
    _, shifted = batches(2)
    known = {bytes(img.numpy()) for img in data.images}
    moved = 0
    for (x_plain, *_), (x_shift, *_) in zip(plain, shifted):
        assert torch.equal(x_shift[4:], x_plain[4:]) and not x_shift[4:].any()  # old-domain rows as they were
        assert all(bytes(img.numpy()) in known for img in x_plain[:4])  # off: the images as read
        moved += sum(bytes(img.numpy()) not in known for img in x_shift[:4])
        assert x_shift[:4].min() >= -1 and x_shift[:4].max() <= 1
    assert moved >= 25  # of 40 drawn concept images, all but the few drawn at offset (0, 0)


def test_concept_of_another_base_is_refused(tmp_path, base, style_dir):
    r = run(style_dir, tmp_path / "c", base, eval_per_digit=0)
    torch.manual_seed(7)
    other = tmp_path / "other.safetensors"
    model, _, _ = load_digit_model(base)
    with torch.no_grad():
        model.conv_in.weight.add_(0.01)
    save_digit_model(other, model, NoiseSchedule())
    with pytest.raises(DifflabError, match="made for another base model"):
        apply_concepts(load_digit_model(other)[0], [load_concept(r.path)])
    out = tmp_path / "out"
    code = main(["digits", "generate", str(out), "--model", str(other), "--concept", str(r.path), "--steps", "2"])
    assert code == 2 and not out.exists()


@pytest.mark.parametrize("case, message", [
    ("empty", "no images"),
    ("missing", "images folder not found"),
    ("corrupt", "corrupt or unreadable image"),
    ("no-prefix", "needs the digit as the file name's prefix"),
    ("name-mnistm", "collides"),
    ("name-SVHN", "collides"),
    ("name-3", "collides"),
    ("name-", "give the concept a name"),
    ("name-a/b", "use 1-64 letters"),
    ("rank", "--rank must be at least 1"),
    ("no-peft", "need the peft package"),
    ("digit-without-domain", "--as digit needs --domain"),
    ("ti-prior", "nothing to preserve"),
    ("ti-row-lr", "ti trains only the row"),
    ("row-lr-0", "--row-lr must be in"),
    ("shift-8", "--augment-shift must be at most 7"),
    ("shift-neg", "--augment-shift must be at least 0"),
])
def test_bad_input_is_one_line_and_writes_nothing(tmp_path, base, style_dir, monkeypatch, case, message):
    images, kw = style_dir, {}
    if case == "empty":
        images = tmp_path / "empty"
        images.mkdir()
        (images / "notes.txt").write_text("not an image")
    elif case == "missing":
        images = tmp_path / "nowhere"
    elif case == "corrupt":
        (style_dir / "9_bad.png").write_bytes(b"\x89PNG broken")
    elif case == "no-prefix":
        (style_dir / "seven.png").write_bytes((style_dir / "7_a.png").read_bytes())
    elif case.startswith("name-"):
        kw["name"] = case[len("name-"):]
    elif case == "rank":
        kw.update(method="lora", rank=0)
    elif case == "no-peft":
        monkeypatch.setitem(sys.modules, "peft", None)  # import peft -> ImportError
        kw["method"] = "lora"
    elif case == "digit-without-domain":
        kw["kind"] = "digit"
    elif case == "ti-prior":
        kw["prior_weight"] = 0.5
    elif case == "ti-row-lr":
        kw["row_lr"] = 0.1
    elif case == "row-lr-0":
        kw.update(method="finetune", row_lr=0.0)
    elif case.startswith("shift-"):
        kw["augment_shift"] = {"shift-8": 8, "shift-neg": -1}[case]
    out = tmp_path / "concept"
    with pytest.raises(DifflabError, match=message) as e:
        run(images, out, base, **kw)
    assert len(str(e.value).splitlines()) == 1
    assert not out.exists()


def test_cli_personalize_and_bad_name(tmp_path, base, style_dir, capsys):
    out = tmp_path / "c"
    argv = ["digits", "personalize", str(style_dir), "--as", "domain", "--name", "wavy", "--out", str(out),
            "--model", str(base), "--steps", "2", "--batch-size", "4", "--eval-per-digit", "0", "--device", "cpu"]
    assert main([*argv, "--augment-shift", "2"]) == 0
    assert "concept 'wavy' (domain, ti, 2 steps" in capsys.readouterr().out
    assert json.loads((out / "concept.json").read_text())["augment_shift"] == 2
    shutil.rmtree(out)
    assert main(argv) == 0
    capsys.readouterr()
    assert main(argv) == 2 and "not empty" in capsys.readouterr().err  # a second run needs --overwrite
    bad = argv.copy()
    bad[bad.index("wavy")] = "svhn"
    assert main([*bad[:-8], "--out", str(tmp_path / "d")]) == 2
    err = capsys.readouterr().err
    assert "collides" in err and len(err.strip().splitlines()) == 1 and not (tmp_path / "d").exists()


@pytest.fixture
def two_concepts(tmp_path, base, style_dir, symbol_dir):
    style = run(style_dir, tmp_path / "style_c", base, eval_per_digit=0).path
    symbol = run(symbol_dir, tmp_path / "symbol_c", base, kind="digit", name="star", domain="mnistm",
                 eval_per_digit=0).path
    return style, symbol


def _files(folder):
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def test_generate_concept_layouts(tmp_path, base, two_concepts):
    style, symbol = two_concepts
    common = ["--model", str(base), "--per-digit", "2", "--steps", "2"]
    assert main(["digits", "generate", str(tmp_path / "a"), *common, "--concept", str(style)]) == 0
    assert _files(tmp_path / "a") == sorted([f"wavy/{d}_{k:03d}.png" for d in range(10) for k in (1, 2)]
                                            + ["wavy_grid.png"])
    assert main(["digits", "generate", str(tmp_path / "b"), *common, "--concept", str(symbol)]) == 0
    assert _files(tmp_path / "b") == [f"{m}/star_{k:03d}.png" for m in ("mnistm", "svhn") for k in (1, 2)]
    assert main(["digits", "generate", str(tmp_path / "c"), *common, "--concept", str(symbol),
                 "--concept", str(style)]) == 0
    assert _files(tmp_path / "c") == ["wavy/star_001.png", "wavy/star_002.png"]


def test_a_lora_style_on_the_teacher_guides_digit_and_domain_by_default(tmp_path, base, style_dir, two_concepts,
                                                                        tiny_unet):
    """--guide's default: 'both' for a teacher drawing a LoRA style (the measured better setting), 'digit' for
    a ti style, a symbol alone, no concept and a student (the way it was distilled); a given --guide is kept.
    The default is in effect end to end: the style's images equal --guide both's, not --guide digit's."""
    from difflab.digits.generate import GenerateConfig, resolve
    from difflab.training.distill import make_student

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
    files = _files(tmp_path / "default" / "wavy")
    assert len(files) == 10
    same = [sha256(tmp_path / "default" / "wavy" / f) == sha256(tmp_path / "both" / "wavy" / f) for f in files]
    other = [sha256(tmp_path / "default" / "wavy" / f) == sha256(tmp_path / "digit" / "wavy" / f) for f in files]
    assert all(same) and not any(other)


def test_generate_without_concepts_is_unchanged_by_them(tmp_path, base, two_concepts, tiny_unet):
    """A concept applied but not asked for draws the shipped layout exactly as the base model does."""
    from difflab.digits.generate import GenerateConfig, generate

    cfg = GenerateConfig(per_digit=1, steps=2, device="cpu")
    generate(tmp_path / "plain", tiny_unet, NoiseSchedule(), cfg, progress=False)
    adapted = apply_concepts(tiny_unet, load_concepts(two_concepts))
    generate(tmp_path / "adapted", adapted, NoiseSchedule(), cfg, progress=False)
    files = _files(tmp_path / "plain")
    assert files == _files(tmp_path / "adapted") and len(files) == 22
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
    from difflab.training.distill import make_student

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
    from difflab.concepts.concept import student_teacher_digest
    from difflab.models.digits import SHIPPED_TEACHER, STUDENT_MODEL
    from difflab.training.distill import make_student

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
    from difflab.concepts.concept import load_with_concepts
    from difflab.digits.generate import GenerateConfig, generate

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
    import json

    from difflab.io import save_checkpoint

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
