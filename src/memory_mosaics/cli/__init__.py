"""``mosaic``: one entry point, one sub-command per task.

Each sub-command lives in its own module, imported only when it runs (so ``mosaic --help`` stays fast). A module
provides ``HELP`` (its description), ``add_arguments(parser)`` and ``run(args) -> int | None``.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys

COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("memory_mosaics.cli.demo", "the main job: laptop-scale reproduction, one report folder"),
    "induction": ("memory_mosaics.cli.induction", "one-block induction head: Memory Mosaic vs GPT"),
    "moons": ("memory_mosaics.cli.moons", "three moons: predictive disentanglement (Section 5)"),
    "regbench": ("memory_mosaics.cli.regbench", "RegBench in-context language learning (Figure 9)"),
    "prepare": ("memory_mosaics.cli.prepare", "corpora (.txt, .jsonl, Hugging Face) to token shards and tokenizer"),
    "convert": ("memory_mosaics.cli.convert", "import a checkpoint of the authors' nanoMosaics code"),
    "train": ("memory_mosaics.cli.train", "train a Memory Mosaic or a GPT (torchrun for several processes)"),
    "eval": ("memory_mosaics.cli.eval", "validation loss (and per-position loss) of a checkpoint"),
    "generate": ("memory_mosaics.cli.generate", "complete prompts with streaming generation or beam search"),
    "paper": ("memory_mosaics.cli.paper", "the paper's language-model figures and tables"),
    "longctx": ("memory_mosaics.cli.longctx", "long-context recall and in-context learning: MQAR, needles, few-shot"),
}


def _find(mod: str) -> bool:
    try:
        return importlib.util.find_spec(mod) is not None
    except ModuleNotFoundError:
        return False


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    commands = {name: entry for name, entry in COMMANDS.items() if _find(entry[0])}
    parser = argparse.ArgumentParser(prog="mosaic", description="Memory Mosaics: train, evaluate, reproduce the paper.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    chosen = argv[0] if argv and argv[0] in commands else None
    for name, (mod, summary) in commands.items():
        if name == chosen:
            module = importlib.import_module(mod)
            p = sub.add_parser(name, help=module.HELP, description=module.HELP)
            module.add_arguments(p)
            p.set_defaults(_run=module.run)
        else:
            sub.add_parser(name, help=summary)
    args = parser.parse_args(argv)
    if not hasattr(args, "_run"):
        parser.print_help()
        return 0 if not argv else 2
    return int(args._run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
