"""``mosaic train``: train a Memory Mosaic or a GPT language model on a prepared dataset (one process, or many under
``torchrun --nproc_per_node N -m memory_mosaics.cli train ...``). One flag per field of ``TrainConfig``."""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from typing import Any

from memory_mosaics.checkpoints import CheckpointError
from memory_mosaics.train.config import TrainConfig

HELP = "train a Memory Mosaic or a GPT language model (warm-up + cosine AdamW, checkpoints, resume, DDP)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.epilog = (
        "The batch order is a function of --seed alone, so a Memory Mosaic and a GPT trained with the same seed see "
        "the same mini-batches in the same order. Under torchrun, the gradient accumulation adapts to the number of "
        "processes so that --batch-size stays the global batch. Ctrl-C saves a checkpoint; --resume continues."
    )
    for f in dataclasses.fields(TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        shown = "" if f.default in (None, "") else f" (default: {f.default})"  # else the help says what it means
        kw: dict[str, Any] = {"default": f.default, "help": f.metadata["help"] + shown}
        if "choices" in f.metadata:
            kw["choices"] = f.metadata["choices"]
        if f.type in ("bool", bool, "bool | None"):
            kw["action"] = argparse.BooleanOptionalAction
        else:
            kw["type"] = {"int": int, "float": float, "str": str}[f.type]
        parser.add_argument(flag, dest=f.name, **kw)


def run(args: argparse.Namespace) -> int:
    from memory_mosaics.train.engine import train

    try:
        cfg = TrainConfig(**{f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig)})
        result = train(cfg)
    except (CheckpointError, FileExistsError, FileNotFoundError, ValueError) as e:
        if int(os.environ.get("RANK", "0")) == 0:  # every process fails the same way; one message is enough
            print(f"mosaic train: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # a second Ctrl-C, or one before training started: nothing half-written is kept
        print("mosaic train: interrupted (the newest complete checkpoint, if any, is intact)", file=sys.stderr)
        return 130
    return 130 if result["interrupted"] else 0
