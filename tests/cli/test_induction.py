import json

from memory_mosaics.cli import main


def test_writes_its_numbers(tmp_path):
    assert main(["induction", "--out", str(tmp_path), "--steps", "5"]) == 0
    record = json.loads((tmp_path / "induction.json").read_text())
    assert set(record["results"]) == {"mosaic", "gpt"} and record["steps"] == 5
    assert record["task"] == {"vocab_size": 32, "seq_len": 64, "n_pairs": 4, "occurrences": 4}


def test_refuses_an_experiment_that_scores_nothing(tmp_path, capsys):
    assert main(["induction", "--out", str(tmp_path), "--occurrences", "1"]) == 2
    assert "score anything" in capsys.readouterr().err and not any(tmp_path.iterdir())
