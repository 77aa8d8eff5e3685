"""`mosaic prepare` -> `mosaic train` -> `mosaic eval` -> `mosaic generate`, and the bad inputs of issue #4: each gives
one clear error naming the file, and no good checkpoint is ever overwritten."""

import json
import random
import shutil
from pathlib import Path

import pytest

from memory_mosaics.checkpoints import list_checkpoints, verify
from memory_mosaics.cli import main

from .conftest import VOCAB, write_dataset

NAMES = ["Lily", "Tom", "Mia", "Ben", "Sue"]
THINGS = ["ball", "cat", "kite", "cake", "dog"]


def _stories(n: int, seed: int) -> str:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        a, b, t = rng.choice(NAMES), rng.choice(NAMES), rng.choice(THINGS)
        out.append(f"{a} had a {t}. {a} gave the {t} to {b}. {b} was happy and said thank you to {a}.")
    return "\n<|endoftext|>\n".join(out) + "\n<|endoftext|>\n"


def _train_flags(data: Path, out: Path, *extra: str) -> list[str]:
    return [
        "train",
        "--data",
        str(data),
        "--out-dir",
        str(out),
        "--n-layer",
        "1",
        "--n-head",
        "2",
        "--n-embd",
        "32",
        "--block-size",
        "32",
        "--batch-size",
        "8",
        "--max-iters",
        "6",
        "--warmup-iters",
        "2",
        "--eval-interval",
        "3",
        "--eval-batches",
        "2",
        "--ckpt-interval",
        "3",
        "--log-interval",
        "1",
        "--no-progress",
        "--no-tensorboard",
        "--device",
        "cpu",
        *extra,
    ]


@pytest.fixture(scope="module")
def text_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("text")
    (root / "train.txt").write_text(_stories(400, 0))
    (root / "valid.txt").write_text(_stories(60, 1))
    assert (
        main(
            [
                "prepare",
                "--input",
                str(root / "train.txt"),
                "--val",
                str(root / "valid.txt"),
                "--tokenizer",
                "bpe",
                "--vocab-size",
                "300",
                "--out",
                str(root / "data"),
                "--no-progress",
            ]
        )
        == 0
    )
    return root


@pytest.fixture(scope="module")
def runs(text_data: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("runs")
    out = {}
    for arch in ("mosaic", "gpt"):
        assert main(_train_flags(text_data / "data", root / arch, "--arch", arch)) == 0
        out[arch] = root / arch
    return out


def _snapshot(run: Path) -> dict[str, bytes]:
    return {str(p.relative_to(run)): p.read_bytes() for c in list_checkpoints(run) for p in c.iterdir()}


def test_eval_and_generate(runs: dict[str, Path], text_data: Path, tmp_path: Path, capsys) -> None:
    run = runs["mosaic"]
    # the run's last validation used 2 batches of 8 windows: the same 16 windows give the same loss
    flags = [
        "--max-windows",
        "16",
        "--json",
        str(tmp_path / "new" / "e.json"),
        "--per-position",
        str(tmp_path / "p.csv"),
    ]
    assert main(["eval", str(run), *flags]) == 0  # makes the folder of an output
    result = json.loads((tmp_path / "new" / "e.json").read_text())
    logged = [r["val_loss"] for r in map(json.loads, (run / "log.jsonl").read_text().splitlines()) if "val_loss" in r]
    assert result["windows"] == 16 and result["loss"] == pytest.approx(logged[-1], rel=1e-5)
    assert len((tmp_path / "p.csv").read_text().splitlines()) == 33
    assert main(["eval", str(run / "ckpt-0000006"), "--text", str(text_data / "valid.txt"), "--context", "64"]) == 0
    assert "loss" in capsys.readouterr().out
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text(json.dumps({"prompt": "Lily had a", "id": 1}) + "\n" + json.dumps({"prompt": "Tom gave"}) + "\n")
    for mode in ("beam", "greedy", "sample"):
        out = tmp_path / "completions" / f"{mode}.jsonl"  # the folder is made
        assert (
            main(
                [
                    "generate",
                    str(run),
                    "--prompts",
                    str(prompts),
                    "--mode",
                    mode,
                    "--max-new-tokens",
                    "8",
                    "--out",
                    str(out),
                ]
            )
            == 0
        )
        rows = [json.loads(ln) for ln in out.read_text().splitlines()]
        assert [r["prompt"] for r in rows] == ["Lily had a", "Tom gave"] and rows[0]["id"] == 1
        assert all(isinstance(r["completion"], str) for r in rows)
    assert main(["generate", str(runs["gpt"]), "--prompt", "Mia", "--mode", "greedy", "--max-new-tokens", "40"]) == 0


def test_resume_with_another_architecture(runs: dict[str, Path], text_data: Path, tmp_path: Path, capsys) -> None:
    run = shutil.copytree(runs["mosaic"], tmp_path / "run")
    before = _snapshot(run)
    assert main(_train_flags(text_data / "data", run, "--arch", "gpt", "--resume", "--max-iters", "9")) == 2
    err = capsys.readouterr().err
    assert "ckpt-0000006/config.json" in err and "'mosaic' model" in err and err.count("\n") == 1
    assert _snapshot(run) == before


def test_resume_with_another_vocabulary(runs: dict[str, Path], tmp_path: Path, capsys) -> None:
    run = shutil.copytree(runs["mosaic"], tmp_path / "run")
    before = _snapshot(run)
    other = write_dataset(tmp_path / "other")  # a dataset of VOCAB tokens, not the run's 300
    assert main(_train_flags(other, run, "--resume", "--max-iters", "9")) == 2
    err = capsys.readouterr().err
    assert "vocabulary mismatch" in err and "config.json" in err and str(VOCAB) in err
    assert _snapshot(run) == before
    # evaluating on a shard of another vocabulary: same kind of error
    assert main(["eval", str(run), "--data", str(other)]) == 2
    assert "vocabulary mismatch" in capsys.readouterr().err


def test_train_into_a_run_without_resume_refuses(
    runs: dict[str, Path], text_data: Path, tmp_path: Path, capsys
) -> None:
    run = shutil.copytree(runs["mosaic"], tmp_path / "run")
    before = _snapshot(run)
    assert main(_train_flags(text_data / "data", run)) == 2
    assert "--resume" in capsys.readouterr().err
    assert _snapshot(run) == before


def test_truncated_newest_checkpoint_falls_back(runs: dict[str, Path], text_data: Path, tmp_path: Path, capsys) -> None:
    run = shutil.copytree(runs["mosaic"], tmp_path / "run")
    good = (run / "ckpt-0000003" / "model.safetensors").read_bytes()
    weights = run / "ckpt-0000006" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])  # truncated, as by a full disk or a partial copy
    # eval/generate name the damaged file when pointed at it
    assert main(["eval", str(run / "ckpt-0000006")]) == 2
    err = capsys.readouterr().err
    assert "ckpt-0000006/model.safetensors" in err and "truncated" in err
    # resume: warns, moves the damaged checkpoint aside, continues from the good one, never touches it
    assert main(_train_flags(text_data / "data", run, "--resume", "--max-iters", "6")) == 0
    out = capsys.readouterr().out
    assert "ckpt-0000006/model.safetensors is truncated" in out and "ckpt-0000003" in out
    assert (run / "ckpt-0000006.corrupt").is_dir()
    assert (run / "ckpt-0000003" / "model.safetensors").read_bytes() == good
    verify(run / "ckpt-0000006")  # redone from step 3


def test_all_checkpoints_damaged_is_an_error(runs: dict[str, Path], text_data: Path, tmp_path: Path, capsys) -> None:
    run = shutil.copytree(runs["gpt"], tmp_path / "run")
    for c in list_checkpoints(run):
        (c / "trainer.pt").write_bytes(b"garbage")
    assert main(_train_flags(text_data / "data", run, "--arch", "gpt", "--resume")) == 2
    err = capsys.readouterr().err
    assert "no usable checkpoint" in err and "ckpt-0000006/trainer.pt" in err


def test_gpt_context_longer_than_its_positions(runs: dict[str, Path], capsys) -> None:
    assert main(["eval", str(runs["gpt"]), "--context", "64"]) == 2
    err = capsys.readouterr().err
    assert "ckpt-0000006/config.json" in err and "32 learned positions" in err
    assert main(["eval", str(runs["mosaic"]), "--context", "64", "--max-windows", "2"]) == 0  # no positions: fine


@pytest.mark.parametrize("command", ["eval", "generate"])
def test_a_text_file_that_is_not_utf8_is_named(command: str, runs: dict[str, Path], tmp_path: Path, capsys) -> None:
    bad = tmp_path / "latin1.txt"
    bad.write_bytes("caf\xe9".encode("latin-1"))
    flag = "--text" if command == "eval" else "--prompts"
    assert main([command, str(runs["mosaic"]), flag, str(bad)]) == 2
    assert f"{bad}: not valid UTF-8 at byte 3" in capsys.readouterr().err


def test_v2_inference_options(text_data: Path, runs: dict[str, Path], tmp_path: Path, capsys) -> None:
    v2 = ["--arch", "mosaic2", "--short-window", "8", "--long-delay", "4", "--long-delay-min", "2"]
    assert main(_train_flags(text_data / "data", tmp_path / "v2", *v2, "--long-delay-max", "12")) == 0
    results = {}
    for name, extra in {"default": [], "m2": ["--long-delay", "2"], "short": ["--no-long-term"]}.items():
        out = tmp_path / f"{name}.json"
        assert main(["eval", str(tmp_path / "v2"), "--max-windows", "8", "--json", str(out), *extra]) == 0
        results[name] = json.loads(out.read_text())
    assert results["default"]["long_delay"] == 4 and results["m2"]["long_delay"] == 2
    assert results["short"]["long_term"] is False and "long_term" not in results["default"]
    assert len({r["loss"] for r in results.values()}) == 3  # each option changes the model
    assert main(["eval", str(runs["gpt"]), "--no-long-term"]) == 2
    assert "a gpt model has no long-term memory" in capsys.readouterr().err
    assert main(["eval", str(runs["mosaic"]), "--long-delay", "3"]) == 2
    assert "a mosaic model has no long-term delay" in capsys.readouterr().err


def test_v2_and_llama_runs_generate_and_extrapolate(text_data: Path, tmp_path: Path) -> None:
    """`mosaic generate` (greedy and beam) on v2, llama and split-llama training runs, and `mosaic paper extrapolate`
    of the three: the per-position loss past the training context, streamed in chunks of the context."""
    v2 = ["--short-window", "8", "--long-delay", "4", "--long-delay-min", "2", "--long-delay-max", "12"]
    runs = {"mosaic2": tmp_path / "mosaic2", "llama": tmp_path / "llama", "llama-split": tmp_path / "llama-split"}
    assert main(_train_flags(text_data / "data", runs["mosaic2"], "--arch", "mosaic2", *v2)) == 0
    assert main(_train_flags(text_data / "data", runs["llama"], "--arch", "llama")) == 0
    # the Figure 5 ablation: llama with short-window heads beside long-range heads
    assert main(_train_flags(text_data / "data", runs["llama-split"], "--arch", "llama", "--split", *v2)) == 0
    split = json.loads((runs["llama-split"] / "run.json").read_text())
    assert split["model"]["split"] is True and split["model"]["short_window"] == 8
    for arch, run in runs.items():
        for mode in ("greedy", "beam"):
            out = tmp_path / f"{arch}_{mode}.jsonl"
            argv = ["generate", str(run), "--prompt", "Lily had a", "--mode", mode, "--max-new-tokens", "40"]
            assert main([*argv, "--out", str(out)]) == 0
            (row,) = [json.loads(ln) for ln in out.read_text().splitlines()]
            assert row["prompt"] == "Lily had a" and isinstance(row["completion"], str)
    out = tmp_path / "extrapolate"
    argv = ["paper", "extrapolate", *map(str, runs.values()), "--text", str(text_data / "valid.txt")]
    assert main([*argv, "--factors", "1", "3", "--chunk", "32", "--max-windows", "2", "--out", str(out)]) == 0
    numbers = json.loads((out / "extrapolate.json").read_text())
    assert numbers["skipped"] == []
    assert sorted((m["kind"], m["factor"]) for m in numbers["models"]) == [
        ("llama", 1), ("llama", 1), ("llama", 3), ("llama", 3), ("mosaic2", 1), ("mosaic2", 3),
    ]  # fmt: skip
    assert all(len(m["per_position"]) == 32 * m["factor"] for m in numbers["models"])
    assert (out / "extrapolate.png").is_file()
