"""``mosaic paper``: the paper's language-model figures and tables from checkpoints (Section 7, Appendix D).

Each sub-command writes ``<out>/<name>.png`` (the figure), ``<name>.json`` (the numbers behind it) and ``<name>.md``
(a Markdown section); ``mosaic paper report`` joins the sections into ``<out>/README.md``. The work is done by the
library functions of ``memory_mosaics.experiments.language``; this module only reads the flags and calls them.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from memory_mosaics.cli.types import device_name, natural, out_folder, positive

if TYPE_CHECKING:
    from memory_mosaics.experiments.language.common import Checkpoint, EvalData

HELP = "the paper's language-model figures and tables (depth, ood, prompts, attention, extrapolate, report)"


def _checkpoint_arguments(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument("checkpoints", nargs="+", metavar="[LABEL=]CKPT", help=what)
    parser.add_argument("--device", default="cpu", type=device_name, help="cpu (default), auto, cuda, cuda:N, mps")


def _data_arguments(parser: argparse.ArgumentParser) -> None:
    src = parser.add_mutually_exclusive_group()
    src.add_argument("--text", metavar="FILE", help="a .txt (documents separated by <|endoftext|>) or .jsonl file")
    src.add_argument("--data", metavar="DIR", help="a prepared dataset (default: the one each run trained on)")
    parser.add_argument("--split", default="", help="split of --data (default: its validation split)")
    parser.add_argument("--max-windows", type=natural, default=64, help="evaluate at most this many windows (0 = all)")
    parser.add_argument("--batch-size", type=positive, default=8, help="windows per forward")


def _depth_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("runs", nargs="+", metavar="RUN_DIR", help="run folders of `mosaic train` (any depths, both archs)")
    p.add_argument("--smooth", type=positive, default=5, help="moving average over this many logged training losses")
    p.add_argument("--last", type=positive, default=5, help="final training loss: mean of this many last logged values")


def _ood_arguments(p: argparse.ArgumentParser) -> None:
    _checkpoint_arguments(p, "checkpoints or run folders (both architectures), optionally LABEL=PATH")
    _data_arguments(p)
    p.add_argument("--context", type=natural, default=0, help="window length (default: each model's training context)")
    p.add_argument("--smooth", type=positive, default=9, help="moving average (positions) before finding the crossing")


def _prompts_arguments(p: argparse.ArgumentParser) -> None:
    _checkpoint_arguments(p, "checkpoints or run folders, one column each, optionally LABEL=PATH")
    p.add_argument("--prompts", required=True, metavar="JSONL", help="e.g. ../shared/prompts/eldan_li_24.jsonl")
    p.add_argument("--field", default="prompt", help="the prompt's field (default: prompt)")
    p.add_argument("--beams", type=positive, default=2, help="beam width (the paper: 2)")
    p.add_argument("--max-new-tokens", type=natural, default=40)
    p.add_argument("--limit", type=natural, default=0, help="only the first N prompts (0 = all)")
    p.add_argument("--name", default="prompts", help="output file stem (e.g. prompts_nb1 for Table 5)")


def _attention_arguments(p: argparse.ArgumentParser) -> None:
    _checkpoint_arguments(p, "checkpoints or run folders (e.g. 1-block Mosaic, GPT, GPT-RoPE, GPT-ALiBi)")
    _data_arguments(p)
    p.add_argument("--extend", type=natural, default=3, help="Figure 15 window, in training contexts (0 = skip)")
    p.add_argument("--block", type=natural, default=0, help="the block whose heads are plotted (all are saved)")
    p.add_argument("--recent", type=positive, default=64, help="Figure 16: plot this many most recent positions")


def _extrapolate_arguments(p: argparse.ArgumentParser) -> None:
    _checkpoint_arguments(p, "checkpoints or run folders (Memory Mosaic, GPT-RoPE, GPT-ALiBi), optionally LABEL=PATH")
    _data_arguments(p)
    p.add_argument(
        "--factors", type=positive, nargs="+", default=[1, 3, 8], help="window lengths, in training contexts"
    )
    p.add_argument(
        "--chunk",
        type=natural,
        default=0,
        help="stream windows through the memory state this many tokens at a time "
        "(0 = one forward per window; set it, e.g. to the training context, for long windows on a CPU)",
    )
    p.add_argument("--smooth", type=positive, default=33, help="moving average (positions) for the plot")


def _report_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--title", default="Memory Mosaics: language-model figures", help="report title")


# ---- from flags to the library's typed calls (imported here: `mosaic paper --help` needs no model code) ----------
def _eval_data(args: argparse.Namespace) -> EvalData:
    from memory_mosaics.experiments.language.common import EvalData

    text = Path(args.text) if args.text else None
    return EvalData(text, args.data, args.split, args.max_windows, args.batch_size)


def _checkpoints(args: argparse.Namespace) -> list[Checkpoint]:
    from memory_mosaics.experiments.language.common import load_checkpoints

    return load_checkpoints(args.checkpoints, args.device)


def _depth(args: argparse.Namespace) -> None:
    from memory_mosaics.experiments.language.depth import depth

    depth([Path(r) for r in args.runs], args.out, smoothing=args.smooth, last=args.last)


def _ood(args: argparse.Namespace) -> None:
    from memory_mosaics.experiments.language.ood import ood

    ood(_checkpoints(args), _eval_data(args), args.out, context=args.context, smoothing=args.smooth)


def _prompts(args: argparse.Namespace) -> None:
    from memory_mosaics.completion import read_prompts
    from memory_mosaics.experiments.language.prompts import prompts

    rows = read_prompts(args.prompts, args.field)  # before the models load: a bad file fails at once
    if args.limit:
        rows = rows[: args.limit]
    prompts(
        _checkpoints(args),
        rows,
        args.out,
        args.prompts,
        field=args.field,
        beams=args.beams,
        max_new_tokens=args.max_new_tokens,
        name=args.name,
    )


def _attention(args: argparse.Namespace) -> None:
    from memory_mosaics.experiments.language.attention import attention

    attention(_checkpoints(args), _eval_data(args), args.out, extend=args.extend, block=args.block, recent=args.recent)


def _extrapolate(args: argparse.Namespace) -> None:
    from memory_mosaics.experiments.language.extrapolate import extrapolate

    extrapolate(
        _checkpoints(args), _eval_data(args), args.out, factors=args.factors, chunk=args.chunk, smoothing=args.smooth
    )


def _report(args: argparse.Namespace) -> None:
    from memory_mosaics.experiments.language.report import report

    print(f"wrote {report(args.out, args.title)}")


Command = tuple[str, Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], None]]
SUBCOMMANDS: dict[str, Command] = {  # name: (help, flags, run)
    "depth": (
        "Figures 7/13: training and validation loss by depth, Memory Mosaic vs GPT (run folders)",
        _depth_arguments,
        _depth,
    ),
    "ood": (
        "Figure 8: per-position loss on out-of-distribution text, and where the curves cross",
        _ood_arguments,
        _ood,
    ),
    "prompts": (
        "Tables 4/5: the 24 story prompts by beam search (width 2), models side by side",
        _prompts_arguments,
        _prompts,
    ),
    "attention": (
        "Figures 14/15/16: attention of the last position; longer windows; λ_φ vs peak width",
        _attention_arguments,
        _attention,
    ),
    "extrapolate": (
        "per-position loss on windows 3x and 8x the training context",
        _extrapolate_arguments,
        _extrapolate,
    ),
    "report": ("join the Markdown sections of --out into README.md", _report_arguments, _report),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="paper_command", metavar="FIGURE", required=True)
    for name, (help_, flags, run_) in SUBCOMMANDS.items():
        p = sub.add_parser(name, help=help_, description=None if name == "report" else help_)
        p.add_argument(
            "--out", type=out_folder, default="results/paper_lm", help="output folder (default: results/paper_lm)"
        )
        flags(p)
        p.set_defaults(_paper_run=run_)


def run(args: argparse.Namespace) -> int:
    import torch

    try:
        if args.paper_command == "report":
            args._paper_run(args)
            return 0
        with torch.no_grad():  # evaluation only (a context, so that callers in the same process keep autograd)
            args._paper_run(args)
    except (ValueError, FileNotFoundError, KeyError) as e:  # CheckpointError and TokenizerError are ValueErrors
        print(f"mosaic paper {args.paper_command}: error: {e}", file=sys.stderr)
        return 2
    print(f"mosaic paper {args.paper_command}: wrote {args.out}")
    return 0
