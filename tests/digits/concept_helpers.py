"""Helpers shared by the personalization tests (test_personalize.py: learning a concept;
test_concept_generate.py: drawing with one). Their fixtures live in conftest.py."""

import hashlib

import torch

from difflab.cli import main as cli_main
from difflab.concepts.personalize import PersonalizeConfig, personalize


def main(argv):
    try:
        return cli_main(argv)
    except SystemExit as e:
        return e.code


def sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def make_cfg(images, out, base, **kw):
    settings = dict(kind="domain", name="wavy", method="ti", steps=4, batch_size=6, model=str(base),
                    eval_per_digit=1, device="cpu", lr=0.05)
    settings.update(kw)
    if settings["method"] != "ti":
        settings.setdefault("prior_weight", 0.0)  # prior batches: test_personalize.py tests them with a stand-in
    return PersonalizeConfig(images_dir=str(images), out_dir=str(out), **settings)


def run(images, out, base, **kw):
    """personalize() on a tiny run (make_cfg's settings, KW on top), no progress bar."""
    return personalize(make_cfg(images, out, base, **kw), progress=False)


def outputs(model, digits, domains, seed=0):
    """The model's output (len(digits), 3, 28, 28) for seeded noise at fixed timesteps: a fingerprint."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(len(digits), 3, 28, 28, generator=g)
    t = torch.tensor([10, 500, 999, 250, 700, 1][:len(digits)])
    with torch.no_grad():
        return model(x, t, torch.tensor(digits), torch.tensor(domains))


def files_in(folder) -> list[str]:
    """Every file under FOLDER, as sorted paths relative to it."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())
