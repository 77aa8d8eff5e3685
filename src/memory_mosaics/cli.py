"""``mosaic``: one entry point, one sub-command per task.

Each sub-command lives in its own module, imported only when it runs (so ``mosaic --help`` stays fast). A module
provides ``HELP`` (one line), ``add_arguments(parser)`` and ``run(args) -> int | None``.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys

COMMANDS: dict[str, str] = {
    "demo": "memory_mosaics.experiments.demo",
    "induction": "memory_mosaics.experiments.induction",
    "moons": "memory_mosaics.experiments.moons.cli",
    "regbench": "memory_mosaics.experiments.regbench.cli",
    "prepare": "memory_mosaics.data.cli",
    "convert": "memory_mosaics.data.convert",
    "train": "memory_mosaics.train.cli",
    "eval": "memory_mosaics.train.evaluate",
    "generate": "memory_mosaics.generate_cli",
    "paper": "memory_mosaics.experiments.language.cli",
}


def _find(mod: str) -> bool:
    try:
        return importlib.util.find_spec(mod) is not None
    except ModuleNotFoundError:
        return False


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    commands = {name: mod for name, mod in COMMANDS.items() if _find(mod)}
    parser = argparse.ArgumentParser(prog="mosaic", description="Memory Mosaics: train, evaluate, reproduce the paper.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    chosen = argv[0] if argv and argv[0] in commands else None
    for name, mod in commands.items():
        if name == chosen:
            module = importlib.import_module(mod)
            p = sub.add_parser(name, help=module.HELP, description=module.HELP)
            module.add_arguments(p)
            p.set_defaults(_run=module.run)
        else:
            sub.add_parser(name, help=f"(see mosaic {name} --help)")
    args = parser.parse_args(argv)
    if not hasattr(args, "_run"):
        parser.print_help()
        return 0 if not argv else 2
    return int(args._run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
