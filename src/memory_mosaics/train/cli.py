"""``mosaic train``: train a Memory Mosaic or a GPT language model on a prepared dataset (one process, or many under
``torchrun --nproc_per_node N -m memory_mosaics.cli train ...``)."""

from __future__ import annotations

import argparse
import os
import sys

from memory_mosaics.train.checkpoint import CheckpointError
from memory_mosaics.train.config import TrainConfig

HELP = "train a Memory Mosaic or a GPT language model (warm-up + cosine AdamW, checkpoints, resume, DDP)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.epilog = (
        "The batch order is a function of --seed alone, so a Memory Mosaic and a GPT trained with the same seed see "
        "the same mini-batches in the same order. Under torchrun, the gradient accumulation adapts to the number of "
        "processes so that --batch-size stays the global batch. Ctrl-C saves a checkpoint; --resume continues."
    )
    TrainConfig.add_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from memory_mosaics.train.loop import train

    try:
        cfg = TrainConfig.from_args(args)
        result = train(cfg)
    except (CheckpointError, FileExistsError, FileNotFoundError, ValueError) as e:
        if int(os.environ.get("RANK", "0")) == 0:  # every process fails the same way; one message is enough
            print(f"mosaic train: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # a second Ctrl-C, or one before training started: nothing half-written is kept
        print("mosaic train: interrupted (the newest complete checkpoint, if any, is intact)", file=sys.stderr)
        return 130
    return 130 if result["interrupted"] else 0
