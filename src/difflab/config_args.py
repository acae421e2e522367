"""Config dataclass -> argparse flags, and back: the one way a `difflab` subcommand gets its settings.

Modelled on improved-diffusion's `add_dict_to_argparser`: one `--field-name` flag per dataclass field,
its default and type read from the field, so the dataclass stays the only source of defaults. Unlike it,
every flag carries a help sentence and shows its default. The words live in one dict per config,
{field: sentence or Flag(...)}, kept in the job's `cli.py` next to the rest of its command-line text (so
a config module holds values and checks only, and a config the CLI cannot edit is described the same
way). A field without an entry is an error when the parser is built: a new setting must say what it is.
Fields a command does not offer are named in `skip`.

Kept free of torch: job CLIs import it at start-up.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from difflab.checks import parse_list

_SCALARS = {"int": int, "float": float, "str": str}


@dataclass(frozen=True)
class Flag:
    """How one config field reads on the command line, where a bare help sentence is not enough."""

    help: str
    flag: str | None = None  # option string if not --field-name; for a bool that defaults to True, its off switch
    shown: str | None = None  # the default in words, where the value says little (None: "the model's own")
    type: Callable | None = None  # what a given value parses as, where the annotation does not say
    choices: Sequence | None = None
    metavar: str | tuple | None = None
    nargs: str | int | None = None  # tuple fields: "+" unless given ("*" lets the list be empty)
    comma: bool = False  # a tuple field given as one comma-separated value ("1000,500,0")
    required: bool = False  # required on the command line even if the API has a default
    positional: bool = False


def _spec(entry: str | Flag) -> Flag:
    return entry if isinstance(entry, Flag) else Flag(entry)


def _default(f: dataclasses.Field, defaults: Mapping):
    if f.name in defaults:
        return defaults[f.name]
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return dataclasses.MISSING


def _kinds(f: dataclasses.Field, default) -> tuple[bool, type | None]:
    """(is a tuple field, scalar type) from the annotation ("int | None", "tuple[int, ...]"), else the default."""
    text = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", "")
    first = text.split("|")[0].strip()
    if first.startswith("tuple["):
        return True, _SCALARS.get(first[len("tuple["):].split(",")[0].split("]")[0].strip())
    if first in _SCALARS:
        return False, _SCALARS[first]
    if isinstance(default, tuple):
        return True, type(default[0]) if default else None
    return False, None if default in (None, dataclasses.MISSING) else type(default)


def _shown(default, spec: Flag) -> str:
    if spec.shown is not None:
        return spec.shown
    if isinstance(default, (tuple, list)):
        if not default:
            return "none"
        return ("," if spec.comma else " ").join(f"{x:g}" if isinstance(x, float) else str(x) for x in default)
    return "none" if default is None else f"{default:g}" if isinstance(default, float) else str(default)


def option_help(sentence: str, default: str) -> str:
    """The one wording of a flag's help: its sentence and its default ('%' escaped for argparse)."""
    return f"{sentence} (default: {default})".replace("%", "%%")


def add_config_args(parser, cls, words: Mapping[str, str | Flag], skip: Sequence[str] = (),
                    defaults: Mapping | None = None) -> None:
    """Add one flag per field of the dataclass `cls` to `parser` (a parser or an argument group).

    words: {field: help sentence or Flag}; every field not in `skip` needs one. defaults: {field: value}
    for a command whose default differs from the config's (e.g. the sweep's smaller per-digit count).
    """
    defaults = defaults or {}
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        if f.name not in words:
            raise TypeError(f"{cls.__name__}.{f.name} has no help sentence: add it to the CLI's words for "
                            f"{cls.__name__} (or to skip=)")
        _add_field(parser, f, _spec(words[f.name]), _default(f, defaults))


def _add_field(parser, f: dataclasses.Field, spec: Flag, default) -> None:
    flag = spec.flag or "--" + f.name.replace("_", "-")
    if isinstance(default, bool):  # a switch: the flag turns the default off or on
        off = spec.flag or ("--no-" + f.name.replace("_", "-") if default else flag)
        parser.add_argument(off, dest=f.name, action="store_false" if default else "store_true",
                            help=spec.help.replace("%", "%%"))
        return
    is_tuple, kind = _kinds(f, default)
    kw: dict = {"type": spec.type or kind or str, "choices": spec.choices, "metavar": spec.metavar}
    if is_tuple and spec.type is None:  # a given type parses the whole value itself (e.g. "LO,HI")
        if spec.comma:
            kw["type"] = _comma_list(kind or str, flag, _shown(default, spec))
        else:
            kw["nargs"] = spec.nargs or "+"
    if spec.positional:
        parser.add_argument(f.name, help=spec.help.replace("%", "%%"), **kw)
    elif spec.required or default is dataclasses.MISSING:
        parser.add_argument(flag, dest=f.name, required=True, help=f"{spec.help} (required)".replace("%", "%%"),
                            **kw)
    else:
        parser.add_argument(flag, dest=f.name, default=default, help=option_help(spec.help, _shown(default, spec)),
                            **kw)


def _comma_list(kind, flag: str, example: str) -> Callable[[str], tuple]:
    def parse(text: str) -> tuple:
        return tuple(parse_list(text, kind, flag, example))

    parse.__name__ = f"comma-separated {kind.__name__}"  # what argparse names in a type error
    return parse


def config_from_args(cls, args: argparse.Namespace, **values):
    """The config of the parsed flags: every field the command offers (an attribute of `args`; tuple
    fields as tuples), the config's defaults for the others, and `values` on top. The config checks itself."""
    for f in dataclasses.fields(cls):
        if f.name not in values and hasattr(args, f.name):
            v = getattr(args, f.name)
            values[f.name] = tuple(v) if isinstance(v, list) else v
    return cls(**values)
