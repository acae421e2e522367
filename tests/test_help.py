"""`--help` explains every flag of every subcommand, and the flags take their defaults from the configs
(difflab.config_args: one source of defaults, one wording of help)."""

from __future__ import annotations

import argparse
import dataclasses

import pytest

from difflab.cli import build_parser
from difflab.config_args import Flag, add_config_args, config_from_args

SWITCHES = (argparse._StoreTrueAction, argparse._StoreFalseAction, argparse._StoreConstAction)


def subcommands() -> dict[str, argparse.ArgumentParser]:
    found = {}

    def walk(parser, path):
        subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if not subs:
            found[" ".join(path)] = parser
        for action in subs:
            for name, sub in action.choices.items():
                walk(sub, (*path, name))

    walk(build_parser(), ())
    return found


COMMANDS = subcommands()


def test_every_subcommand_is_walked():
    assert {"digits reverse", "digits sweep", "report", "ti compose", "clip zeroshot", "ddim noise"} <= set(COMMANDS)
    assert len(COMMANDS) >= 24


def problems_of(parser: argparse.ArgumentParser) -> list[str]:
    problems = []
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        name = "/".join(action.option_strings) or action.dest
        if not action.help or len(action.help.split()) < 2:
            problems.append(f"{name}: no help sentence ({action.help!r})")
            continue
        text = action.help % {**vars(action), "prog": parser.prog}  # as argparse renders it
        if not action.option_strings or isinstance(action, SWITCHES):
            continue  # positionals and switches have no default to show
        if action.required:
            if "required" not in text:
                problems.append(f"{name}: required, but its help does not say so: {text!r}")
        elif "(default: " not in text:
            problems.append(f"{name}: its help shows no default: {text!r}")
    return problems


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_help_explains_every_flag(command):
    assert not problems_of(COMMANDS[command]), f"difflab {command}:\n" + "\n".join(problems_of(COMMANDS[command]))
    assert COMMANDS[command].format_help()  # renders (a stray '%' in a help text would raise here)


def _configs():
    from difflab.clip.config import ZeroShotConfig
    from difflab.ddim.config import DDIMConfig, EtaGridConfig, InterpolateConfig
    from difflab.digits.classify import ClassifierTrainConfig
    from difflab.digits.generate import GenerateConfig
    from difflab.digits.sweep import SWEEP_PER_DIGIT
    from difflab.personalize import config as ti
    from difflab.report.config import ReportConfig
    from difflab.training.config import TrainConfig
    from difflab.training.distill import DistillConfig

    ti_args = ["--model", "sd", "--embeds", "e"]
    return [  # (argv, config class, the config the defaults must give)
        (["digits", "generate", "o"], GenerateConfig, GenerateConfig()),
        (["demo", "o"], GenerateConfig, GenerateConfig()),
        (["digits", "reverse", "o.png"], GenerateConfig, GenerateConfig()),
        (["digits", "sweep", "o"], GenerateConfig, GenerateConfig(per_digit=SWEEP_PER_DIGIT)),
        (["digits", "train"], TrainConfig, TrainConfig()),
        (["digits", "distill"], DistillConfig, DistillConfig()),
        (["digits", "train-classifier", "--domain", "svhn"], ClassifierTrainConfig, ClassifierTrainConfig("svhn")),
        (["ddim", "sample", "n", "o"], DDIMConfig, DDIMConfig()),
        (["ddim", "eta-grid", "o"], EtaGridConfig, EtaGridConfig()),
        (["ddim", "interpolate", "o"], InterpolateConfig, InterpolateConfig()),
        (["clip", "zeroshot", "i", "--model", "m"], ZeroShotConfig, ZeroShotConfig("i", "m")),
        (["report", "o"], ReportConfig, ReportConfig()),
        (["ti", "generate", "p.json", "o", *ti_args], ti.GenerateConfig, ti.GenerateConfig()),
        (["ti", "compose", "o", *ti_args, "--prompt", "x", "--region", "a:left"], ti.ComposeConfig,
         ti.ComposeConfig()),
        (["ti", "train", "o", "--model", "sd", "--images", "i", "--token", "<t>", "--init-word", "dog"],
         ti.TrainConfig, ti.TrainConfig(token="<t>", init_word="dog")),
    ]


@pytest.mark.parametrize("argv, cls, expected", _configs(), ids=lambda v: " ".join(v) if isinstance(v, list) else "")
def test_flag_defaults_are_the_config_defaults(argv, cls, expected):
    args = build_parser().parse_args(argv)
    assert config_from_args(cls, args) == expected


def test_a_field_without_help_is_refused_when_the_parser_is_built():
    @dataclasses.dataclass
    class Settings:
        steps: int = 3
        lr: float = 0.1

    with pytest.raises(TypeError, match="Settings.lr has no help sentence"):
        add_config_args(argparse.ArgumentParser(), Settings, {"steps": "optimisation steps"})
    p = argparse.ArgumentParser()
    add_config_args(p, Settings, {"steps": Flag("optimisation steps", flag="--iters")}, skip=("lr",))
    assert config_from_args(Settings, p.parse_args(["--iters", "5"])) == Settings(steps=5)


def test_reverse_and_sweep_take_every_generate_flag():
    from difflab.digits.generate import GenerateConfig

    flags = {f.name for f in dataclasses.fields(GenerateConfig)}
    for command, skipped in (("digits generate", set()), ("digits reverse", set()), ("digits sweep", {"guidance"})):
        dests = {a.dest for a in COMMANDS[command]._actions}
        assert flags - skipped <= dests, command
    args = build_parser().parse_args(["digits", "reverse", "o.png", "--guide", "both", "--fp32"])
    cfg = config_from_args(GenerateConfig, args)
    assert cfg.guide == "both" and cfg.bf16 is False
