"""`difflab` command line: a thin argparse layer over the API. No maths here.

Each job package has a `cli.py` with `register(subparsers)`; this module wires them up, runs the chosen
handler and turns a DifflabError into one line on stderr with exit code 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from difflab.errors import DifflabError

# job CLIs, imported at start-up: they must not import heavy optional packages at module level
JOB_CLIS = ("difflab.digits.cli", "difflab.ddim.cli", "difflab.clip.cli", "difflab.personalize.cli",
            "difflab.report.cli")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="difflab", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name in JOB_CLIS:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as e:
            if e.name and name.startswith(e.name):  # a job not built yet
                continue
            raise
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        result = args.func(args)
    except DifflabError as e:
        print(f"difflab: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("difflab: interrupted", file=sys.stderr)
        return 130
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
