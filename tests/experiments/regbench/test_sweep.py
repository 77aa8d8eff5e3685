from pathlib import Path

import pytest

from memory_mosaics.experiments.regbench.sweep import Grid, run_dir, select, sweep_configs
from memory_mosaics.experiments.regbench.train import RegBenchConfig


def _fake_run(model: str, loss: float, acc: float) -> dict:
    view = {"best_epoch": 1, "val": {"loss": loss, "accuracy": acc}, "test": {"accuracy": acc}}
    return {"model": model, "n_train": 100, "selection": {"loss": view, "accuracy": view}, **view}


def test_select_across_runs_by_either_rule() -> None:
    runs = [_fake_run("mosaic", 1.0, 0.80), _fake_run("mosaic", 1.2, 0.90), _fake_run("gpt", 2.0, 0.5)]
    by_loss = {r["model"]: r for r in select(runs, "loss")}
    by_acc = {r["model"]: r for r in select(runs, "accuracy")}
    assert by_loss["mosaic"]["val"]["loss"] == 1.0 and by_acc["mosaic"]["val"]["accuracy"] == 0.90
    assert by_loss["gpt"]["select"] == "loss" and by_acc["gpt"]["select"] == "accuracy"


def test_sweep_configs_cover_the_grid_small_n_first_with_a_step_budget() -> None:
    grid = Grid([500, 100], ["mosaic", "gpt"], [2], [4, 8], [32, 36], [0.1])
    configs = sweep_configs(grid, RegBenchConfig(epochs=200, batch_size=32, lr=2e-3), step_budget=200)
    assert len(configs) == 2 * 2 * 3  # d 36 is not divisible by 8 heads
    assert [c.n_train for c in configs] == [500] * 6 + [100] * 6  # the order of the grid
    # 16 steps per epoch at N = 500 (13 epochs for 200 steps), 4 at N = 100 (50 epochs)
    assert {c.n_train: (c.epochs, c.eval_every) for c in configs} == {500: (13, 1), 100: (50, 5)}
    assert all(c.lr == 2e-3 for c in configs)
    assert run_dir(Path("out"), configs[0]).as_posix() == "out/mosaic/N500/L2_H4_d32_wd0.1"


def test_a_grid_without_a_valid_width_is_refused() -> None:
    with pytest.raises(ValueError, match="no grid point"):
        sweep_configs(Grid([10], ["mosaic"], [1], [4], [30], [0.1]), RegBenchConfig())
