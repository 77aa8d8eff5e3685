"""The documentation kept true: the README's Python example runs; every ``mosaic`` line of the README, the results
READMEs, the protocols in docs/ and the recipes names a real command and only flags that command accepts; the README
names every command; every relative link of README.md, results/README.md and docs/ reaches an existing file (and
heading); and every path of the README's "What is where" exists."""

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
PACKAGE = ROOT / "src" / "memory_mosaics"


def fenced_blocks(text: str, language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", text, flags=re.M | re.S)


def without_fences(text: str) -> str:
    return re.sub(r"^```.*?^```", "", text, flags=re.M | re.S)


def section(text: str, title: str) -> str:
    """The body of the ``## title`` section (up to the next heading of level 2)."""
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", text, flags=re.M | re.S)
    assert match, f"README.md has no '## {title}' section"
    return match.group(1)


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
    assert name in COMMANDS, f"the documentation runs an unknown command: mosaic {name}"
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


SOURCES = [
    README,
    *sorted((ROOT / "results").rglob("*.md")),
    *sorted((ROOT / "docs").glob("*.md")),
    *sorted((ROOT / "recipes").glob("*.sh")),
]


def command_lines(path: Path) -> list[str]:
    """The ``mosaic`` lines of a recipe, or of a Markdown file's bash blocks and inline code."""
    text = path.read_text()
    if path.suffix != ".md":
        return mosaic_lines(text)
    spans = re.findall(r"`(?:\.venv/bin/)?(mosaic [^`]*)`", without_fences(text))
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
    checked = {str(p.relative_to(ROOT)) for p in SOURCES if command_lines(p)}
    expected = {"README.md", "results/README.md", "docs/regbench.md", "docs/three_moons.md"}
    expected |= {f"recipes/{name}" for name in ("lm_cpu_tinystories.sh", "paper_lm_cpu.sh", "paper_lm_gpu.sh")}
    assert expected <= checked, f"no `mosaic` line found in {sorted(expected - checked)}"


def test_the_readme_names_every_command():
    text = section(README.read_text(), "Command line")
    missing = [name for name in COMMANDS if f"`{name}`" not in text and f"mosaic {name}" not in text]
    assert not missing, f"README.md's command line section does not name `mosaic {'`, `mosaic '.join(missing)}`"


def slug(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces as hyphens."""
    text = re.sub(r"[`*_]", "", heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    return {slug(h) for h in re.findall(r"^#+ (.+)$", without_fences(path.read_text()), flags=re.M)}


LINKED = [README, ROOT / "results" / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


@pytest.mark.parametrize("path", LINKED, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_reach_existing_files(path):
    assert path.is_file(), f"{path.relative_to(ROOT)} is missing"
    links = re.findall(r"\]\(([^)\s]+)\)", without_fences(path.read_text()))
    broken = []
    for link in links:
        if re.match(r"^[a-z]+:", link):  # http:, https:, mailto:
            continue
        target, _, anchor = link.partition("#")
        file = (path.parent / target).resolve() if target else path
        if not file.exists():
            broken.append(f"{link} (no such file)")
        elif anchor and file.suffix == ".md" and anchor not in anchors(file):
            broken.append(f"{link} (no such heading)")
    assert not broken, f"{path.relative_to(ROOT)}: broken links: {broken}"


def test_what_is_where_names_existing_paths():
    """The layout block's entries and the paper -> code table's paths (under src/memory_mosaics/, or the repository's
    top-level folders) exist."""
    body = section(README.read_text(), "What is where")
    (layout,) = fenced_blocks(body, "text")
    names = re.findall(r"^  (\S+)", layout, flags=re.M)  # ops/, state.py, ...
    names += re.findall(r"(?:^|; |: )(\w+\.py)\b", layout, flags=re.M)  # "...; generate.py: sampling"
    top = re.findall(r"(?:^|, )(\w+)/ \(", layout.splitlines()[-1])  # tests/ (mirrors src/), benchmarks/ (...)
    spans = re.findall(r"`([\w/]+(?:\.py|/))`", without_fences(body))
    missing = [n for n in {*names, *spans} if not (PACKAGE / n).exists() and not (ROOT / n).exists()]
    missing += [f"{t}/ (top level)" for t in top if not (ROOT / t).is_dir()]
    assert names and spans and top, "the README's layout block or paper -> code table was not found"
    assert not missing, f"README.md's 'What is where' names paths that do not exist: {sorted(missing)}"
