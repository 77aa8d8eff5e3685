import argparse
import json

import pytest

from memory_mosaics.cli import main
from memory_mosaics.cli.regbench import CPU_DEFAULTS, add_arguments, resolve, run_configs


def test_end_to_end(tmp_path, capsys) -> None:
    out = tmp_path / "rb"
    argv = ["regbench", "--out", str(out), "--n-train", "5", "--n-layer", "1", "--n-head", "2", "--n-embd", "16"]
    argv += ["--epochs", "1", "--n-val", "3", "--n-test", "4", "--weight-decay", "0.01", "0.1"]
    assert main(argv) == 0
    assert {"config.json", "ngram.json", "results.json", "table.md", "regbench.png"} <= {p.name for p in out.iterdir()}
    results = json.loads((out / "results.json").read_text())
    assert len(results["selected"]) == 2  # best of the two weight decays, for each model
    assert set(results["ngram"]) == {"2-gram", "3-gram"}
    table = (out / "table.md").read_text()
    assert "Memory Mosaic" in table and "Transformer" in table and "| 0.937 |" in table  # published 3-gram
    assert main(argv) == 0  # a second call reuses every finished run
    assert capsys.readouterr().out.count("reuse") == 4
    assert main([*argv, "--select", "accuracy"]) == 0  # another rule re-reads the same runs
    assert capsys.readouterr().out.count("reuse") == 4
    assert "selected by validation accuracy" in (out / "table.md").read_text()
    assert all(r["select"] == "accuracy" for r in json.loads((out / "results.json").read_text())["selected"])


def test_iid(tmp_path) -> None:
    out = tmp_path / "iid"
    argv = ["regbench", "--out", str(out), "--iid", "--models", "mosaic", "--n-train", "3", "--n-layer", "1"]
    argv += ["--n-head", "2", "--n-embd", "16", "--epochs", "1", "--n-val", "2", "--n-test", "2"]
    assert main(argv) == 0
    assert (out / "iid" / "mosaic" / "N3").is_dir() and "IID" in (out / "table.md").read_text()


def test_paper_sweep_listing(tmp_path, capsys) -> None:
    assert main(["regbench", "--paper", "--list", "--out", str(tmp_path / "p")]) == 0
    out = capsys.readouterr().out
    # 5 N x 2 models x depth 3 x heads 3 x d 3 x wd 2 (every d is divisible by every head count)
    assert "540 runs" in out and "N40000/L8_H8_d256_wd0.01  epochs 200  eval every 1" in out
    assert not (tmp_path / "p").exists()
    assert main(["regbench", "--list", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out  # the CPU default: 4 runs of about 200 steps
    assert "4 runs" in out and "N100/L2_H8_d128_wd0.1  epochs 50" in out and "N500/L2_H8_d128_wd0.1  epochs 13" in out
    assert (
        main(["regbench", "--paper", "--n-train", "100", "--models", "mosaic", "--list", "--out", str(tmp_path)]) == 0
    )
    assert "54 runs" in capsys.readouterr().out  # explicit flags win over --paper


def test_glue_preset(tmp_path, capsys) -> None:
    assert main(["regbench", "--glue", "--n-train", "100", "--list", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "2 runs" in out and "mosaic/N100/L2_H8_d128_wd0.1  epochs 200  eval every 10" in out
    assert main(["regbench", "--glue", "--paper", "--list", "--out", str(tmp_path)]) != 0


def test_explicit_flags_win_over_a_preset_even_at_their_default_value() -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(["--glue", "--init", "gpt2", "--no-scale-logits", "--bias", "--n-head", "4"])
    resolve(args)
    (cfg, *_) = run_configs(args)
    assert (cfg.init, cfg.scale_logits, cfg.bias, cfg.n_head) == ("gpt2", False, True, 4)
    assert (cfg.n_embd, cfg.dropout, cfg.lr, cfg.eval_every) == (128, 0.05, 5e-4, 10)  # the rest from the glue
    args = parser.parse_args(["--n-embd", "64", "--n-head", "4", "--init", "gpt2", "--no-scale-logits", "--lr", "1e-3"])
    resolve(args)  # the earlier CPU default, given explicitly
    (cfg, *_) = run_configs(args)
    assert (cfg.n_embd, cfg.n_head, cfg.init, cfg.scale_logits, cfg.lr) == (64, 4, "gpt2", False, 1e-3)
    assert (cfg.bias, cfg.dropout, cfg.epochs) == (False, 0.05, 50)  # the rest from the CPU default
    args = parser.parse_args([])
    resolve(args)
    assert {k: getattr(args, k) for k in CPU_DEFAULTS} == CPU_DEFAULTS


@pytest.mark.parametrize(
    "flags, message",
    [(["--lr", "-1"], "lr must be > 0"), (["--n-embd", "30", "--n-head", "4"], "no grid point")],
)
def test_regbench_command_refuses_impossible_settings_before_any_work(flags, message, tmp_path, capsys):
    assert main(["regbench", "--out", str(tmp_path / "out"), *flags]) == 2
    assert message in capsys.readouterr().err and not (tmp_path / "out").exists()


def test_recurrent_baselines_end_to_end(tmp_path) -> None:
    models = ["lstm"]
    try:
        import transformers  # noqa: F401

        models += ["mamba", "rwkv"]
    except ImportError:
        pass
    out = tmp_path / "rb"
    argv = ["regbench", "--out", str(out), "--models", *models, "--n-train", "4", "--n-layer", "2", "--n-head", "2"]
    argv += ["--n-embd", "16", "--epochs", "1", "--n-val", "2", "--n-test", "2", "--skip-ngram", "--threads", "1"]
    assert main(argv) == 0
    results = json.loads((out / "results.json").read_text())
    assert sorted(r["model"] for r in results["selected"]) == sorted(models)
    assert (out / "regbench.png").is_file() and (out / "lstm" / "N4").is_dir()
    table = (out / "table.md").read_text()
    assert "| LSTM (torch.nn) | 4 |" in table  # a readable label
    if "mamba" in models:
        assert "| Mamba (transformers) | 4 |" in table and "| RWKV-4 (transformers) | 4 |" in table


def test_a_recurrent_run_that_cannot_work_is_refused_naming_the_flag(tmp_path, capsys) -> None:
    pytest.importorskip("transformers")
    assert main(["regbench", "--out", str(tmp_path / "out"), "--models", "rwkv", "--n-layer", "1"]) == 2
    assert "n_layer >= 2" in capsys.readouterr().err and not (tmp_path / "out").exists()
