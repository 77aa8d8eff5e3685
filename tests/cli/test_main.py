import importlib

import pytest

from memory_mosaics.cli import COMMANDS, main


@pytest.mark.parametrize("name", list(COMMANDS))
def test_every_command_is_registered_and_complete(name, capsys):
    module = importlib.import_module(COMMANDS[name][0])
    assert module.HELP and callable(module.add_arguments) and callable(module.run)
    with pytest.raises(SystemExit) as exit_:
        main([name, "--help"])
    assert exit_.value.code == 0
    assert name in capsys.readouterr().out


def test_top_level_help_lists_the_commands(capsys):
    assert main([]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in COMMANDS)


def test_unknown_command_is_an_error():
    with pytest.raises(SystemExit) as exit_:
        main(["nonsense"])
    assert exit_.value.code == 2


@pytest.mark.parametrize(
    "argv",
    [
        ["demo", "--out"],
        ["induction", "--out"],
        ["moons", "--out"],
        ["regbench", "--out"],
        ["paper", "report", "--out"],
        ["convert", "ckpt.pt", "--out"],
        ["train", "--data", "nowhere", "--out-dir"],
    ],
    ids=lambda argv: argv[0],
)
def test_an_output_folder_that_is_a_file_is_refused_before_any_work(argv, tmp_path, capsys):
    target = tmp_path / "notes.txt"
    target.write_text("mine")
    try:
        code = main([*argv, str(target)])
    except SystemExit as e:  # argparse refuses it while reading the command line
        code = e.code
    assert code == 2 and "is a file, not a folder" in capsys.readouterr().err
    assert target.read_text() == "mine"


@pytest.mark.parametrize(
    "argv, flag",
    [
        (["induction", "--out", "{tmp}/out", "--steps", "0"], "--steps"),
        (["demo", "--out", "{tmp}/out", "--steps", "0"], "--steps"),
        (["eval", "{tmp}/run", "--batch-size", "0"], "--batch-size"),
        (["eval", "{tmp}/run", "--max-windows", "-1"], "--max-windows"),
        (["paper", "ood", "{tmp}/run", "--out", "{tmp}/out", "--batch-size", "0"], "--batch-size"),
        (["paper", "extrapolate", "{tmp}/run", "--out", "{tmp}/out", "--factors", "1", "0"], "--factors"),
        (["paper", "attention", "{tmp}/run", "--out", "{tmp}/out", "--recent", "0"], "--recent"),
        (["moons", "--out", "{tmp}/out", "--seeds", "0"], "--seeds"),
        (["moons", "--out", "{tmp}/out", "--iters", "0"], "--iters"),
        (["regbench", "--out", "{tmp}/out", "--n-train", "0"], "--n-train"),
        (["regbench", "--out", "{tmp}/out", "--batch-size", "0"], "--batch-size"),
    ],
    ids=lambda v: v if isinstance(v, str) else " ".join(v[:2]),
)
def test_a_count_below_its_minimum_is_refused_before_any_work(argv, flag, tmp_path, capsys):
    # before, these divided by zero, failed deep inside, or (eval --batch-size -1) printed a loss of 0
    with pytest.raises(SystemExit) as exit_:
        main([arg.format(tmp=tmp_path) for arg in argv])
    assert exit_.value.code == 2 and f"argument {flag}: must be >= " in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "argv",
    [
        ["train", "--data", "nowhere", "--out-dir", "{tmp}/run"],
        ["eval", "{tmp}/run"],
        ["generate", "{tmp}/run", "--prompt", "a"],
        ["regbench", "--out", "{tmp}/run"],
        ["paper", "ood", "{tmp}/run", "--out", "{tmp}/run"],
    ],
    ids=lambda argv: argv[0],
)
def test_an_unknown_device_is_refused_before_any_work(argv, tmp_path, capsys):
    try:
        code = main([arg.format(tmp=tmp_path) for arg in argv] + ["--device", "gpu"])
    except SystemExit as e:  # argparse refuses it while reading the command line
        code = e.code
    assert code == 2 and "unknown device 'gpu'" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()
