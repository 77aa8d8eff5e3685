"""The benchmark scripts run end to end at a tiny shape and print the JSON they promise (no speed is asserted)."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"
TINY = ["--d", "32", "--heads", "4"]
ONCE = ["--warmup", "1", "--repeats", "1", "--threads", "1"]
SHAPE = [*TINY, "--contexts", "16", "--batch", "2", "--layers", "1", "--vocab", "64"]
THROUGHPUT = [*SHAPE, "--steps", "1", *ONCE]
STREAM_POSITIONS = [*TINY, "--new-tokens", "2", "--prompt", "2", "--layers", "1", "--vocab", "64", "--repeats", "1"]
STREAM_POSITIONS += ["--positions", "4", "40", "--steps-per-position", "2"]
V2_STEP = ["--steps", "2", "--repeats", "1"]


def run(script: str, *args: str) -> dict:
    out = subprocess.run(
        [sys.executable, str(BENCH / script), *args], capture_output=True, text=True, timeout=300, check=True
    ).stdout
    return json.loads(out[out.index("{\n") :])  # the report is the last, indented JSON object


@pytest.mark.parametrize(
    "script, args, key",
    [
        ("layers.py", [*TINY, "--context", "16", "--batch", "2", "--repeats", "1", "--threads", "1"], "ratios"),
        ("throughput.py", THROUGHPUT, "results"),
        ("throughput.py", [*THROUGHPUT, "--compare-eager"], "mosaic_eager_over_gpt_tokens_per_s"),
        (
            "throughput.py",
            [*THROUGHPUT, "--pair", "mosaic2", "llama", "--short-window", "8", "--long-delay", "4"],
            "mosaic2_over_llama_tokens_per_s",
        ),
        (
            "streaming.py",
            [*TINY, "--new-tokens", "4", "--prompt", "4", "--layers", "1", "--vocab", "64", "--repeats", "2"],
            "results",
        ),
        (
            "streaming.py",
            [
                *TINY,
                "--new-tokens",
                "4",
                "--prompt",
                "4",
                "--layers",
                "1",
                "--vocab",
                "64",
                "--repeats",
                "1",
                "--pair",
                "mosaic2",
                "llama",
                "--short-window",
                "4",
                "--long-delay",
                "2",
            ],
            "mosaic2_over_llama_stream_tokens_per_s",
        ),
        # the default pair: the GPT's learned positions must reach the last timed token (40 + 1 untimed + 2)
        ("streaming.py", STREAM_POSITIONS, "per_token_by_position"),
        (
            "v2_memory_step.py",
            [*TINY, "--positions", "4", "20", *V2_STEP, "--short-window", "4", "--long-delay", "2"],
            "step_us_last_over_first_position",
        ),
        (
            "v2_scan_share.py",
            [*SHAPE, "--steps", "1", "--warmup", "1", "--threads", "1"],
            "cpu",
        ),
        (
            "hf_generate.py",
            [*TINY, "--layers", "1", "--vocab", "64", "--prompt", "4", "--new-tokens", "4", *ONCE[2:]],
            "hf_over_ours_tokens_per_s",
        ),
    ],
)
def test_benchmark_runs_and_prints_json(script: str, args: list[str], key: str) -> None:
    report = run(script, *args)
    assert key in report or key in report["results"]["16"]


def test_documented_benchmark_commands_use_real_flags() -> None:
    """Every ``python benchmarks/...`` command in the Markdown files (the commands that made the recorded numbers) runs
    a script that exists, with flags that script accepts."""
    root = BENCH.parent
    docs = [root / "README.md", *sorted((root / "results").rglob("*.md"))]
    commands = {
        c for doc in docs for c in re.findall(r"`(?:PYTHONPATH=\S+ )?python (benchmarks/[^`]*)`", doc.read_text())
    }
    assert len(commands) >= 5
    flags: dict[str, set[str]] = {}
    for command in commands:
        script, *args = command.split()
        assert (root / script).is_file(), f"documented command runs a missing script: {command}"
        if script not in flags:
            help_text = subprocess.run(
                [sys.executable, str(root / script), "--help"], capture_output=True, text=True, check=True
            ).stdout
            flags[script] = set(re.findall(r"--[\w-]+", help_text))
        unknown = [a for a in args if a.startswith("--") and a not in flags[script]]
        assert not unknown, f"`python {command}` uses flags that {script} does not have: {unknown}"


def test_throughput_reports_a_dead_measuring_process_instead_of_hanging() -> None:
    # the child dies of a TypeError before it reports; run apart, so that a regression times out instead of hanging
    code = (
        "import os, sys; sys.path.insert(0, sys.argv[1]); import throughput\n"
        "if __name__ == '__main__': throughput.run_isolated(os._exit, 'not a status')"
    )
    out = subprocess.run([sys.executable, "-c", code, str(BENCH)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 1 and "_exit failed in its own process (exit 1)" in out.stderr


@pytest.mark.parametrize(
    "script, args, message",
    [
        ("throughput.py", ["--heads", "3", "--contexts", "16"], "divisible by n_head"),
        ("throughput.py", ["--steps", "0"], "argument --steps: must be >= 1, got 0"),
        ("streaming.py", ["--new-tokens", "0"], "argument --new-tokens: must be >= 1, got 0"),
        ("streaming.py", ["--positions", "0"], "argument --positions: must be >= 1, got 0"),
        ("layers.py", ["--repeats", "0"], "argument --repeats: must be >= 1, got 0"),
        ("v2_memory_step.py", ["--positions", "0"], "argument --positions: must be >= 1, got 0"),
        ("v2_memory_step.py", ["--heads", "3"], "must be divisible by --heads"),
        ("v2_scan_share.py", ["--heads", "3"], "must be divisible by --heads"),
    ],
)
def test_benchmarks_refuse_impossible_settings_before_measuring(script: str, args: list[str], message: str) -> None:
    out = subprocess.run([sys.executable, str(BENCH / script), *args], capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and message in out.stderr
