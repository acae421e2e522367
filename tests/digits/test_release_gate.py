"""scripts/release_gate.py's rule: ship only at accuracy >= 0.995 in both domains and a Fréchet distance no
worse than the shipped teacher's in each; every failed condition is named."""


def _point(acc, fd):
    return {"acc": {"mnistm": acc[0], "svhn": acc[1]}, "fd": {"mnistm": fd[0], "svhn": fd[1]}}


def test_verdict_passes_only_when_every_condition_holds(load_script):
    gate = load_script("scripts/release_gate.py")
    shipped = _point((0.998, 0.996), (0.265, 0.350))
    assert gate.verdict(_point((0.995, 1.0), (0.265, 0.2)), shipped) == []  # at the bounds: passes
    fails = gate.verdict(_point((0.980, 0.982), (0.300, 0.536)), shipped)  # the one-hour run of RESULTS §9
    assert len(fails) == 4 and fails[0].startswith("mnistm accuracy 0.980 < 0.995")
    assert "svhn Fréchet 0.536 > the shipped teacher's 0.350" in fails
    assert gate.verdict(_point((0.999, 0.999), (0.2651, 0.1)), shipped) == [
        "mnistm Fréchet 0.265 > the shipped teacher's 0.265"]  # worse by any amount fails
