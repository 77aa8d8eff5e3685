import argparse

import pytest
import torch

from memory_mosaics.cli import main
from memory_mosaics.cli.moons import add_arguments, recipe


@pytest.fixture(autouse=True)
def _restore_threads():
    """``--threads 1`` sets torch's threads for the whole process: give the next tests theirs back."""
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


def test_writes_a_report(tmp_path):
    flags = "--seeds 1 --heads 3 --iters 4 --short-len 40 --restarts 1 --rollout-iters 2 --eval-sequences 2"
    flags += " --curve-stride 200 --threads 1"
    assert main(["moons", "--out", str(tmp_path), *flags.split()]) == 1  # four iterations do not converge: it says so
    for name in ("report.md", "config.json", "metrics.json", "curves.csv", "fig5_3head.png", "fig10_weights_3head.png"):
        assert (tmp_path / name).exists()
    assert (tmp_path / "seeds" / "3head_seed0.json").exists()
    assert "results/moons/README.md" in (tmp_path / "report.md").read_text()  # where the recipe's reasons are


def test_refuses_a_recipe_that_cannot_train(tmp_path, capsys):
    assert main(["moons", "--out", str(tmp_path / "out"), "--short-frac", "1.5"]) == 2
    assert "short_frac must be in [0, 1]" in capsys.readouterr().err and not (tmp_path / "out").exists()


def test_the_authors_flag_takes_their_recipe_whatever_the_recipe_flags():
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    cfg = recipe(parser.parse_args(["--authors", "--iters", "7"]))
    assert (cfg.iters, cfg.batch_size, cfg.lr, cfg.short_len, cfg.balanced) == (500, 64, 1e-2, 0, False)
    cfg = recipe(parser.parse_args(["--iters", "7", "--unbalanced"]))
    assert (cfg.iters, cfg.balanced) == (7, False)
