"""`mosaic longctx`: every task family end to end on a tiny configuration."""

import json

import numpy as np
import pytest

from memory_mosaics.cli import main
from memory_mosaics.data.shards import FORMAT, ShardWriter, write_meta

TINY = ["--widths", "16", "--n-layer", "1", "--n-head", "2", "--steps", "2", "--batch-size", "4"]
TINY += ["--eval-sequences", "4", "--no-progress", "--short-window", "4", "--long-delay", "2"]
TINY += ["--long-delay-min", "2", "--long-delay-max", "4"]


def check_folder(out, plot):
    files = {p.name for p in out.iterdir()}
    assert {"config.json", "results.json", "results.md", plot} <= files
    config = json.loads((out / "config.json").read_text())
    assert config["suite"]["seed"] == 0 and config["task"]["data_seed"] == 0 and "command" in config
    results = json.loads((out / "results.json").read_text())
    assert results["wall_seconds"] > 0
    return results, (out / "results.md").read_text()


def test_mqar(tmp_path, capsys):
    out = tmp_path / "mqar"
    argv = ["longctx", "mqar", "--out", str(out), *TINY, "--lengths", "16", "32", "--pairs", "2", "4"]
    assert main([*argv, "--vocab-size", "32"]) == 0
    results, md = check_folder(out, "accuracy_vs_n_kv.png")
    assert [tuple(c) for c in results["config"]["task"]["test_cells"]] == [(16, 2), (16, 4), (32, 2), (32, 4)]
    assert len(results["runs"]) == 6 and {r["model"] for r in results["runs"]} >= {"lstm", "mosaic2-fixed"}
    assert "| (32, 4) |" in md and "LSTM" in md and "results in" in capsys.readouterr().out


@pytest.fixture
def shard(tmp_path):
    w = ShardWriter(tmp_path / "train.bin", "uint16", 40)
    w.write(np.arange(2000) % 40, documents=1)
    w.commit()
    split = {"tokens": 2000, "documents": 1}
    tok = {"vocab_size": 40, "eot_id": 0}
    write_meta(tmp_path, {"format": FORMAT, "dtype": "uint16", "tokenizer": tok, "splits": {"train": split}})
    return tmp_path


@pytest.mark.parametrize("kind", ["needle", "vt"])
def test_needle_on_a_shard(tmp_path, shard, kind):
    out = tmp_path / kind
    argv = ["longctx", "needle", "--kind", kind, "--out", str(out), *TINY, "--models", "gpt", "mosaic"]
    assert main([*argv, "--train-len", "32", "--multiples", "1", "2", "--needles", "2", "--haystack", str(shard)]) == 0
    results, md = check_folder(out, "accuracy_vs_seq_len.png")
    assert results["config"]["task"]["haystack"].endswith(":train")
    gpt, mosaic = results["runs"]
    assert gpt["eval"][1]["accuracy"] is None and mosaic["eval"][1]["accuracy"] is not None
    assert "n/a" in md and "learned positions" in md


def test_needle_context_extension(tmp_path, capsys):
    out = tmp_path / "ft"
    argv = ["longctx", "needle", "--out", str(out), *TINY, "--models", "mosaic2", "gpt", "--train-len", "32"]
    argv += ["--multiples", "1", "2", "--needles", "2", "--noise-vocab", "16"]
    assert main([*argv, "--finetune-multiple", "2", "--finetune-steps", "1", "2"]) == 0
    results, md = check_folder(out, "accuracy_vs_seq_len.png")
    v2 = results["runs"][0]
    assert [r["steps"] for r in v2["finetune"]] == [0, 1, 2] and results["config"]["suite"]["finetune_len"] == 64
    assert "## Context extension: accuracy at 64 tokens" in md and "| GPT-2 (learned positions) | 16 | n/a |" in md
    assert main([*argv, "--finetune-steps"]) == 0  # none: no fine-tune
    assert "finetune" not in json.loads((out / "results.json").read_text())["runs"][0]
    assert main(argv) == 0  # the preset's multiple (4) is not tested here: the longest tested one instead
    assert json.loads((out / "results.json").read_text())["config"]["suite"]["finetune_len"] == 64
    assert main([*argv, "--finetune-multiple", "4", "--finetune-steps", "1"]) == 2
    assert "--finetune-multiple 4 is not one of --multiples [1, 2]" in capsys.readouterr().err


def test_fewshot_and_presets(tmp_path):
    out = tmp_path / "fs"
    argv = ["longctx", "fewshot", "--out", str(out), *TINY, "--models", "llama", "--train-shots", "1"]
    assert main([*argv, "--test-shots", "0", "2", "--classes", "2", "--item-len", "2"]) == 0
    results, _ = check_folder(out, "accuracy_vs_shots.png")
    assert [r["shots"] for r in results["runs"][0]["eval"]] == [0, 2]
    assert results["config"]["command"]["lr"] == 3e-3  # the cpu preset filled what no flag gave
    with pytest.raises(SystemExit):
        main(["longctx", "fewshot", "--steps", "0"])
