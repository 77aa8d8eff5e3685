import argparse
import itertools
import json
import math
import re

import pytest

from memory_mosaics.cli import main
from memory_mosaics.experiments.regbench.cli import CPU_DEFAULTS, add_arguments, resolve, run_configs, select
from memory_mosaics.experiments.regbench.train import RunConfig, build_model, learning_rate, train_run


def test_learning_rate_schedule() -> None:
    cfg = RunConfig(lr=1e-3, warmup_frac=0.1, warmup_start_lr=1e-6, min_lr_frac=0.1)
    total = 200
    assert learning_rate(0, total, cfg) == pytest.approx(1e-6)
    assert learning_rate(10, total, cfg) == pytest.approx((1e-6 + 1e-3) / 2)  # linear warm-up over 20 steps
    peak = learning_rate(20, total, cfg)  # cosine counted from step 0: just below lr at the end of warm-up
    assert 0.9e-3 < peak < 1e-3 and peak == pytest.approx(1e-4 + 0.45e-3 * (1 + math.cos(math.pi * 0.1)))
    assert learning_rate(total, total, cfg) == pytest.approx(1e-4)
    lrs = [learning_rate(s, total, cfg) for s in range(20, total + 1)]
    assert all(a >= b for a, b in itertools.pairwise(lrs))


def test_equal_shapes_give_close_parameter_counts() -> None:
    mm, gpt = build_model(RunConfig(model="mosaic")), build_model(RunConfig(model="gpt"))
    # same non-embedding count up to biases/LayerNorms/per-head scalars (GPT's learned positions are excluded)
    assert abs(mm.num_params() - gpt.num_params()) / gpt.num_params() < 0.02


def test_the_authors_glue_options_reach_the_model() -> None:
    m = build_model(RunConfig(n_embd=64, bias=False, scale_logits=True, init="library"))
    assert m.config.logit_scale == 64**-0.5 and m.config.init == "library" and not m.config.bias
    assert not any(n.endswith(".bias") for n, _ in m.named_parameters())


@pytest.mark.parametrize("model", ["mosaic", "gpt"])
def test_tiny_training_run(tmp_path, model: str) -> None:
    cfg = RunConfig(model=model, n_train=6, n_layer=1, n_head=2, n_embd=16, epochs=2, batch_size=4, n_val=3, n_test=3)
    r = train_run(cfg, tmp_path, progress=False)
    assert r["best_epoch"] in (1, 2) and r["steps"] == 4
    assert 0 <= r["test"]["accuracy"] <= 1 and 0 <= r["test"]["tvd"] <= 1 and r["test"]["positions"] > 0
    assert (tmp_path / "checkpoint" / "model.safetensors").is_file()
    assert len((tmp_path / "history.jsonl").read_text().splitlines()) == 2
    assert json.loads((tmp_path / "metrics.json").read_text())["config"]["model"] == model


def test_both_selection_rules_are_recorded(tmp_path) -> None:
    cfg = RunConfig(n_train=6, n_layer=1, n_head=2, n_embd=16, epochs=4, batch_size=4, n_val=3, n_test=3, lr=3e-3)
    r = train_run(cfg, tmp_path, progress=False)
    history = [json.loads(line) for line in (tmp_path / "history.jsonl").read_text().splitlines()]
    by_loss, by_acc = r["selection"]["loss"], r["selection"]["accuracy"]
    assert by_loss["val"]["loss"] == min(h["val_loss"] for h in history)
    assert by_acc["val"]["accuracy"] == max(h["val_accuracy"] for h in history)
    assert (r["best_epoch"], r["val"], r["test"]) == (by_loss["best_epoch"], by_loss["val"], by_loss["test"])
    for s in (by_loss, by_acc):  # each rule's validation metrics are those logged at its epoch
        assert next(h for h in history if h["epoch"] == s["best_epoch"])["val_loss"] == s["val"]["loss"]
    if by_acc["best_epoch"] != by_loss["best_epoch"]:
        assert (tmp_path / "checkpoint_best_accuracy" / "model.safetensors").is_file()


def _fake_run(model: str, loss: float, acc: float) -> dict:
    view = {"best_epoch": 1, "val": {"loss": loss, "accuracy": acc}, "test": {"accuracy": acc}}
    return {"model": model, "n_train": 100, "selection": {"loss": view, "accuracy": view}, **view}


def test_select_across_runs_by_either_rule() -> None:
    runs = [_fake_run("mosaic", 1.0, 0.80), _fake_run("mosaic", 1.2, 0.90), _fake_run("gpt", 2.0, 0.5)]
    by_loss = {r["model"]: r for r in select(runs, "loss")}
    by_acc = {r["model"]: r for r in select(runs, "accuracy")}
    assert by_loss["mosaic"]["val"]["loss"] == 1.0 and by_acc["mosaic"]["val"]["accuracy"] == 0.90
    assert by_loss["gpt"]["select"] == "loss" and by_acc["gpt"]["select"] == "accuracy"


def test_cli_end_to_end(tmp_path, capsys) -> None:
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


def test_cli_iid(tmp_path) -> None:
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
    "field, value, message",
    [
        ("lr", -1.0, "lr must be > 0"),
        ("dropout", 1.5, "dropout must be in [0, 1)"),
        ("weight_decay", -0.1, "weight_decay must be >= 0"),
        ("eval_every", 0, "eval_every must be >= 1"),
        ("beta2", 1.0, "beta2 must be in [0, 1)"),
        ("n_embd", 30, "divisible by n_head"),
    ],
)
def test_a_run_that_cannot_train_is_refused(field, value, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        RunConfig(**{field: value})


@pytest.mark.parametrize(
    "flags, message",
    [(["--lr", "-1"], "lr must be > 0"), (["--n-embd", "30", "--n-head", "4"], "no grid point")],
)
def test_regbench_command_refuses_impossible_settings_before_any_work(flags, message, tmp_path, capsys):
    assert main(["regbench", "--out", str(tmp_path / "out"), *flags]) == 2
    assert message in capsys.readouterr().err and not (tmp_path / "out").exists()
