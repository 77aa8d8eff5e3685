"""``mosaic paper``: the paper's language-model figures and tables from checkpoints (Section 7, Appendix D).

Each sub-command writes ``<out>/<name>.png`` (the figure), ``<name>.json`` (the numbers behind it) and ``<name>.md``
(a Markdown section); ``mosaic paper report`` joins the sections into ``<out>/README.md``.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

from memory_mosaics.cli.types import out_folder

HELP = "the paper's language-model figures and tables (depth, ood, prompts, attention, extrapolate, report)"

SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "depth": ("depth", "Figures 7/13: training and validation loss by depth, Memory Mosaic vs GPT (run folders)"),
    "ood": ("ood", "Figure 8: per-position loss on out-of-distribution text, and where the curves cross"),
    "prompts": ("prompts", "Tables 4/5: the 24 story prompts by beam search (width 2), models side by side"),
    "attention": ("attention", "Figures 14/15/16: attention of the last position; longer windows; λ_φ vs peak width"),
    "extrapolate": ("extrapolate", "per-position loss on windows 3x and 8x the training context"),
}
ORDER = ["depth", "ood", "prompts", "attention", "extrapolate"]  # the report's section order


def _add_out(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--out", type=out_folder, default="results/paper_lm", help="output folder (default: results/paper_lm)"
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="paper_command", metavar="FIGURE", required=True)
    for name, (mod, help_) in SUBCOMMANDS.items():
        p = sub.add_parser(name, help=help_, description=help_)
        _add_out(p)
        importlib.import_module(f"memory_mosaics.experiments.language.{mod}").add_arguments(p)
        p.set_defaults(_module=mod)
    p = sub.add_parser("report", help="join the Markdown sections of --out into README.md")
    _add_out(p)
    p.add_argument("--title", default="Memory Mosaics: language-model figures", help="report title")
    p.set_defaults(_module=None)


def report(out: Path, title: str) -> Path:
    """README.md: the sections in the paper's order; a variant such as prompts_nb1.md follows its figure's section."""
    sections = sorted((p for p in out.glob("*.md") if p.name != "README.md"), key=_section_key)
    if not sections:
        raise FileNotFoundError(f"{out} holds no sections (*.md); run the other `mosaic paper` commands first")
    text = f"# {title}\n\n" + "\n\n".join(p.read_text().strip() for p in sections) + "\n"
    (out / "README.md").write_text(text)
    return out / "README.md"


def _section_key(path: Path) -> tuple[int, str]:
    rank = next((i for i, n in enumerate(ORDER) if path.stem == n or path.stem.startswith(f"{n}_")), len(ORDER))
    return rank, path.stem


def run(args: argparse.Namespace) -> int:
    import torch

    try:
        if args._module is None:
            print(f"wrote {report(Path(args.out), args.title)}")
            return 0
        module = importlib.import_module(f"memory_mosaics.experiments.language.{args._module}")
        with torch.no_grad():  # evaluation only (a context, so that callers in the same process keep autograd)
            module.run(args)
    except (ValueError, FileNotFoundError, KeyError) as e:  # CheckpointError and TokenizerError are ValueErrors
        print(f"mosaic paper {args.paper_command}: error: {e}", file=sys.stderr)
        return 2
    print(f"mosaic paper {args.paper_command}: wrote {args.out}")
    return 0
