"""The end of a benchmark: its JSON record written whole (temp file + rename), and where it went."""

import json
import sys

from difflab.io import atomic_path


def command_line() -> str:
    """How the benchmark was run, for its record: `.venv/bin/python benchmarks/NAME.py ARGS`."""
    return " ".join([".venv/bin/python", *sys.argv])


def write_record(path, record: dict, say: bool = True) -> None:
    """Write `record` as indented JSON to `path` (folders made), never leaving a half-written file: a
    benchmark killed while writing keeps its previous record. Values JSON lacks (paths) are written as
    str; `say`: print where it went."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(record, indent=2, default=str) + "\n")
    if say:
        print(f"wrote {path}")
