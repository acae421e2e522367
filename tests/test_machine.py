"""One machine description (difflab.runtime.machine) for the report and every benchmark (issue 14)."""

import ast
from pathlib import Path

from difflab.runtime import cpu_name, finish_machine, load_average, machine

ROOT = Path(__file__).resolve().parent.parent


def test_machine_has_one_spelling_of_everything():
    m = machine(note="test")
    assert {"cpu", "cores", "torch_threads", "gpus", "cuda", "python", "torch", "platform",
            "load_average_at_start", "note"} <= set(m)
    assert m["cpu"] == cpu_name() and m["cores"] >= 1 and m["note"] == "test" and isinstance(m["gpus"], list)
    assert "load_average_at_end" not in m
    assert finish_machine(m) is m and len(m["load_average_at_end"]) in (0, 3)
    la = load_average()
    assert all(isinstance(x, float) and x >= 0 and round(x, 2) == x for x in la)


def test_benchmarks_and_report_use_the_package_helper():
    """No second machine()/cpu-name helper and no other load-average spelling in benchmarks/ or src/."""
    files = sorted((ROOT / "benchmarks").glob("*.py")) + sorted((ROOT / "src" / "difflab").rglob("*.py"))
    for path in files:
        text = path.read_text()
        defs = {n.name for n in ast.walk(ast.parse(text)) if isinstance(n, ast.FunctionDef)}
        if path.name != "runtime.py":
            assert not defs & {"machine", "_cpu_name", "cpu_name"}, path
            assert "getloadavg" not in text and "load_avg" not in text, path
