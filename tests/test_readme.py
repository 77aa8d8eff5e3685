"""The documentation kept true: the README's Python example runs, and every ``mosaic`` line of the README, the results
READMEs and the recipes names a real command and only flags that command accepts."""

import argparse
import importlib
import re
import shlex
from pathlib import Path

import pytest
import torch

from memory_mosaics import MemoryMosaic
from memory_mosaics.cli import COMMANDS

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"


def fenced_blocks(text: str, language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", text, flags=re.M | re.S)


def mosaic_lines(text: str) -> list[str]:
    """Every shell line (continuations joined, comments dropped, arrays such as ``"${COMMON[@]}"`` expanded) that runs
    ``mosaic`` or ``memory_mosaics.cli``."""
    for name, items in re.findall(r"^(\w+)=\((.*?)\)$", text, flags=re.M | re.S):
        text = text.replace(f'"${{{name}[@]}}"', " ".join(items.split()))
    joined = re.sub(r"\\\n\s*", " ", text)
    lines = [line.split(" #")[0].strip() for line in joined.splitlines()]
    lines = [re.sub(r"^torchrun .*?-m memory_mosaics\.cli ", "mosaic ", line) for line in lines]
    return [line for line in lines if line.startswith("mosaic ")]


def command_parser(tokens: list[str]) -> tuple[argparse.ArgumentParser, list[str]]:
    """The parser that reads ``tokens`` (after ``mosaic``), descending into sub-commands; and the tokens left to it."""
    name, rest = tokens[0], tokens[1:]
    assert name in COMMANDS, f"README/recipes run an unknown command: mosaic {name}"
    parser = argparse.ArgumentParser(prog=f"mosaic {name}")
    importlib.import_module(COMMANDS[name][0]).add_arguments(parser)
    while True:
        subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if not subs or not rest or rest[0] not in subs[0].choices:
            return parser, rest
        parser, rest = subs[0].choices[rest[0]], rest[1:]


def test_the_python_example_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (example,) = fenced_blocks(README.read_text(), "python")[:1]
    namespace: dict = {}
    exec(compile(example, str(README), "exec"), namespace)
    loaded = MemoryMosaic.from_pretrained(tmp_path / "ckpt")
    idx = torch.randint(0, 4096, (1, 32))
    torch.testing.assert_close(loaded(idx)[0], namespace["model"](idx)[0])
    assert namespace["out"].shape == (1, 16 + 200) and namespace["best"].shape[-1] == 16 + 50


SOURCES = [README, *sorted((ROOT / "results").rglob("*.md")), *sorted((ROOT / "recipes").glob("*.sh"))]


def command_lines(path: Path) -> list[str]:
    """The ``mosaic`` lines of a recipe, or of a Markdown file's bash blocks and inline code."""
    text = path.read_text()
    if path.suffix != ".md":
        return mosaic_lines(text)
    spans = re.findall(r"`(?:\.venv/bin/)?(mosaic [^`]*)`", re.sub(r"^```.*?^```", "", text, flags=re.M | re.S))
    return mosaic_lines("\n".join(fenced_blocks(text, "bash"))) + spans


@pytest.mark.parametrize("path", [p for p in SOURCES if command_lines(p)], ids=lambda p: str(p.relative_to(ROOT)))
def test_command_lines_use_real_commands_and_flags(path):
    for line in command_lines(path):
        tokens = shlex.split(line)[1:]
        if tokens[0] == "--help":  # the top-level help: tests/test_cli.py
            continue
        parser, rest = command_parser(tokens)
        known = {s for a in parser._actions for s in a.option_strings}
        unknown = [t.split("=")[0] for t in rest if t.startswith("--") and t.split("=")[0] not in known]
        assert not unknown, (
            f"{path.relative_to(ROOT)}: `{line}` uses flags that `{parser.prog}` does not have: {unknown}"
        )


def test_readme_and_recipes_are_checked():
    checked = {p.name for p in SOURCES if command_lines(p)}
    assert {"README.md", "lm_cpu_tinystories.sh", "paper_lm_cpu.sh", "paper_lm_gpu.sh"} <= checked
