import json

from memory_mosaics.cli import main


def test_demo_writes_a_report(tmp_path):
    assert main(["demo", "--out", str(tmp_path), "--steps", "5", "--skip", "moons", "regbench"]) == 0
    report = (tmp_path / "report.md").read_text()
    assert "induction head" in report and (tmp_path / "induction_loss.png").stat().st_size > 0
    numbers = json.loads((tmp_path / "results.json").read_text())
    assert numbers["induction"]["stream_vs_full_max_abs_error_float64"] < 1e-9
    assert numbers["config"]["skip"] == ["moons", "regbench"]
