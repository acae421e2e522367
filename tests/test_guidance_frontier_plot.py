"""benchmarks/plot_guidance_frontier.py: seed_spread.py records merged into one curve per model, the table it
prints, the plot it writes, and a one-line refusal of a file that is not such a record."""

import json

import pytest
from PIL import Image

SCRIPT = "benchmarks/plot_guidance_frontier.py"


def _record(path, points):
    """seed_spread.py's shape: {"results": {w: {"mean": {domain: {"acc", "fd"}}, ...}}, ...}."""
    results = {w: {"mean": {"mnistm": {"acc": a, "fd": f}, "svhn": {"acc": a - 0.01, "fd": f + 0.1}},
                   "per_seed": {}} for w, (a, f) in points.items()}
    path.write_text(json.dumps({"command": "x", "results": results}))
    return path


def test_curves_merge_by_guidance_and_are_plotted(tmp_path, capsys, load_script):
    a = _record(tmp_path / "a.json", {"3": (0.99, 0.26)})
    b = _record(tmp_path / "b.json", {"2.5": (0.98, 0.24), "2": (0.97, 0.25)})
    mod = load_script(SCRIPT)
    label, points = mod.load_curve(f"teacher={a},{b}")
    assert label == "teacher" and list(points) == [2.0, 2.5, 3.0]  # sorted by w, both files
    assert points[3.0]["svhn"]["fd"] == pytest.approx(0.36)
    out = tmp_path / "plots" / "frontier.png"
    assert mod.main(["--curve", f"teacher={a},{b}", "--curve", f"other={b}", "--out", str(out)]) == 0
    table = capsys.readouterr().out
    assert "| teacher | 2.5 | 0.9800 / 0.9700 | 0.240 / 0.340 |" in table and table.count("| other |") == 2
    with Image.open(out) as im:
        assert im.size[0] > 800 and im.size[1] > 300
    assert [p.name for p in out.parent.iterdir()] == ["frontier.png"]  # no temp file left beside it


@pytest.mark.parametrize("content", ["{not json", json.dumps({"results": {"3": {}}}), json.dumps([1])])
def test_a_file_that_is_not_a_seed_spread_record_is_named(tmp_path, content, load_script):
    bad = tmp_path / "bad.json"
    bad.write_text(content)
    with pytest.raises(SystemExit, match=f"{bad}: not a seed_spread.py record"):
        load_script(SCRIPT).load_curve(f"m={bad}")
    with pytest.raises(SystemExit, match="expected LABEL=FILE.json"):
        load_script(SCRIPT).load_curve(str(bad))
