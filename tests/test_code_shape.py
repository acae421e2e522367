"""Issue 14's shape targets, kept from now on: no function in src/ over 60 lines, and no package holding more
than 15 % of the code (top-level modules count as one package, `difflab` itself)."""

import ast
from collections import Counter
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "difflab"
MAX_FUNCTION_LINES = 60
MAX_PACKAGE_SHARE = 0.15


def _modules() -> list[Path]:
    return sorted(SRC.rglob("*.py"))


def test_no_function_over_60_lines():
    long = []
    for path in _modules():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1  # `def` to last line, docstring and comments included
                if lines > MAX_FUNCTION_LINES:
                    long.append(f"{path.relative_to(SRC)}:{node.name} ({lines} lines)")
    assert not long, f"split these into functions of at most {MAX_FUNCTION_LINES} lines: {', '.join(long)}"


def test_no_package_holds_over_15_percent_of_the_lines():
    lines = Counter()
    for path in _modules():
        parts = path.relative_to(SRC).parts
        package = parts[0] if len(parts) > 1 else "difflab (top-level modules)"
        lines[package] += sum(1 for line in path.read_text(encoding="utf-8").splitlines() if line.strip())
    total = sum(lines.values())
    over = [f"{name}: {n} of {total} non-blank lines ({n / total:.1%})" for name, n in lines.most_common()
            if n > MAX_PACKAGE_SHARE * total]
    assert not over, f"packages over {MAX_PACKAGE_SHARE:.0%} of the code (split them by job): {'; '.join(over)}"
