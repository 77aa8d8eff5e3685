import json
import sys
import types

from memory_mosaics.cli import demo, main


def test_writes_a_report(tmp_path):
    assert main(["demo", "--out", str(tmp_path), "--steps", "5", "--skip", "moons", "regbench"]) == 0
    report = (tmp_path / "report.md").read_text()
    assert "induction head" in report and (tmp_path / "induction_loss.png").stat().st_size > 0
    numbers = json.loads((tmp_path / "results.json").read_text())
    assert numbers["induction"]["stream_vs_full_max_abs_error_float64"] < 1e-9
    assert numbers["config"]["skip"] == ["moons", "regbench"]


def test_failed_acceptance_of_a_sub_experiment_is_reported_not_fatal(tmp_path, monkeypatch):
    fake = types.ModuleType("fake_experiment")
    fake.HELP = "fake"
    fake.add_arguments = lambda p: p.add_argument("--out")
    fake.run = lambda args: 1  # ran to the end, some acceptance check failed
    monkeypatch.setitem(sys.modules, "fake_experiment", fake)
    monkeypatch.setattr(demo, "EXPERIMENTS", {"fake": ("Fake", "fake_experiment", [], "report.md")})
    text, _ = demo.run_experiment("fake", tmp_path)
    assert "exited with code 1" in text and "fake/report.md" in text


def test_the_experiments_it_runs_are_commands():
    from memory_mosaics.cli import COMMANDS

    assert all(module == COMMANDS[name][0] for name, (_, module, _, _) in demo.EXPERIMENTS.items())
