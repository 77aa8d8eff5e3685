"""The benchmark scripts run end to end at a tiny shape and print the JSON they promise (no speed is asserted)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"
TINY = ["--d", "32", "--heads", "4"]
ONCE = ["--warmup", "1", "--repeats", "1", "--threads", "1"]


def run(script: str, *args: str) -> dict:
    out = subprocess.run(
        [sys.executable, str(BENCH / script), *args], capture_output=True, text=True, timeout=300, check=True
    ).stdout
    return json.loads(out[out.index("{\n") :])  # the report is the last, indented JSON object


@pytest.mark.parametrize(
    "script, args, key",
    [
        ("layers.py", [*TINY, "--context", "16", "--batch", "2", "--repeats", "1", "--threads", "1"], "ratios"),
        (
            "throughput.py",
            [*TINY, "--contexts", "16", "--batch", "2", "--layers", "1", "--vocab", "64", "--steps", "1", *ONCE],
            "results",
        ),
        (
            "streaming.py",
            [*TINY, "--new-tokens", "4", "--prompt", "4", "--layers", "1", "--vocab", "64", "--repeats", "2"],
            "results",
        ),
    ],
)
def test_benchmark_runs_and_prints_json(script: str, args: list[str], key: str) -> None:
    report = run(script, *args)
    assert key in report
