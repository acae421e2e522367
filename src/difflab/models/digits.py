"""The digit job's model files: the conditional UNet (EMA weights + config, one safetensors file) and the
per-domain evaluation classifiers, saved and loaded through `io.save_checkpoint`/`io.load_checkpoint`
(atomic writes, digest and NaN/inf checks) and `models.state.load_state_strict`.

The architectures live beside this file (models/unet.py, models/classifier.py); the shipped weights in
src/difflab/assets/.
"""

from __future__ import annotations

from pathlib import Path

from difflab.device import resolve_device
from difflab.diffusion.schedule import NoiseSchedule
from difflab.errors import DifflabError
from difflab.io import load_checkpoint, save_checkpoint
from difflab.models.classifier import ClassifierConfig, DigitClassifier
from difflab.models.state import load_state_strict
from difflab.models.unet import ConditionalUNet, UNetConfig

KIND = "difflab-digits-unet"
TRAIN_KIND = "difflab-digits-train"  # a training checkpoint (training/train.py): model., ema., optimizer ...
CLASSIFIER_KIND = "difflab-digit-classifier"
ASSETS = Path(__file__).resolve().parent.parent / "assets"
DEFAULT_MODEL = ASSETS / "digits_unet.safetensors"  # the teacher (CFG, 20 DDIM steps by default)
STUDENT_MODEL = ASSETS / "digits_student.safetensors"  # distilled from it: guidance input, 4 steps
SHIPPED = {"teacher": DEFAULT_MODEL, "student": STUDENT_MODEL}
# what a student distilled from the default teacher (`digits distill` without --teacher) records as its teacher
SHIPPED_TEACHER = "shipped"


def model_path(name) -> Path:
    """'teacher' / 'student' -> the shipped file; None -> the teacher; anything else is a path that must be a
    readable file (one-line error otherwise)."""
    if name is None:
        return DEFAULT_MODEL
    if str(name) in SHIPPED:
        return SHIPPED[str(name)]
    path = Path(name)
    if not path.is_file():
        raise DifflabError(f"--model {name}: neither 'teacher', 'student' nor a readable model file")
    return path


def save_digit_model(path, model: ConditionalUNet, schedule: NoiseSchedule, extra: dict | None = None):
    """Write `model`'s weights with its config and `schedule` (+ `extra` metadata keys) atomically."""
    meta = {"kind": KIND, "unet": model.config.to_dict(), "schedule": schedule.to_dict(), **(extra or {})}
    save_checkpoint(path, model.state_dict(), meta)


def load_digit_model(path=None, prefix: str = "") -> tuple[ConditionalUNet, NoiseSchedule, dict]:
    """Load (model in eval mode, schedule, meta) from a file written by save_digit_model or the trainer
    (prefix 'ema.' picks the EMA weights out of a training checkpoint). `path` may also be 'teacher' or
    'student' (the shipped models). A distilled student gets `model.student`: what it was distilled for
    (steps, spacing, guidance_range, guide), which `digits generate` enforces."""
    path = model_path(path)
    tensors, meta = load_checkpoint(path)
    if meta.get("kind") not in (KIND, TRAIN_KIND):
        raise DifflabError(f"{path}: not a difflab digit model (kind={meta.get('kind')!r})")
    if meta.get("kind") == TRAIN_KIND and not prefix:
        prefix = "ema."
    state = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
    try:
        schedule = NoiseSchedule.from_dict(meta["schedule"])
        model = ConditionalUNet(UNetConfig.from_dict(meta["unet"]), schedule.alphas_cumprod)
    except (KeyError, TypeError) as e:
        raise DifflabError(f"{path}: checkpoint config is incomplete or from another version ({e})") from None
    except DifflabError as e:  # a config field no network can have (e.g. an unknown prediction target)
        raise DifflabError(f"{path}: {e}") from None
    load_state_strict(model, state, path)
    if model.config.guidance_input:
        if not isinstance(meta.get("student"), dict):
            raise DifflabError(f"{path}: a guidance-input model without its 'student' metadata")
        model.student = dict(meta["student"])
    return model.eval(), schedule, meta


def default_classifier_path(domain: str) -> Path:
    """The shipped classifier of `domain` ('mnistm' or 'svhn')."""
    return ASSETS / f"classifier_{domain}.safetensors"


def save_classifier(path, model: DigitClassifier, extra: dict | None = None) -> None:
    """Write the classifier's weights with its config (+ `extra` metadata keys: domain, val_acc, ...)."""
    save_checkpoint(path, model.state_dict(),
                    {"kind": CLASSIFIER_KIND, **(extra or {}), "config": model.config.to_dict()})


def load_classifier(path, device: str = "cpu") -> tuple[DigitClassifier, dict]:
    """(classifier in eval mode on `device`, its metadata) from a file written by `save_classifier`."""
    tensors, meta = load_checkpoint(path)
    if meta.get("kind") != CLASSIFIER_KIND:
        raise DifflabError(f"{path}: not a difflab digit classifier (kind={meta.get('kind')!r})")
    model = DigitClassifier(ClassifierConfig(**meta.get("config", {})))
    load_state_strict(model, tensors, path)
    return model.eval().to(resolve_device(device)), meta

