"""`digits personalize` (issue 12) on a tiny UNet saved as the base model: what each method trains, keeps
and refuses. Drawing with a concept: test_concept_generate.py."""

import json
import shutil
import sys

import pytest
import torch

from difflab.concepts import concept as cmod
from difflab.concepts import personalize as pmod
from difflab.concepts.concept import (
    apply_concepts,
    base_state_dict,
    extend_tables,
    load_concept,
)
from difflab.diffusion.schedule import NoiseSchedule
from difflab.errors import DifflabError
from difflab.io import tensor_digest
from difflab.models.digits import load_digit_model, save_digit_model

from .concept_helpers import main, make_cfg, outputs, run, sha256


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
