"""``mosaic induction``: the one-block induction head of Section 3, Memory Mosaic against GPT, into one JSON record."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict

from memory_mosaics.cli.types import out_folder, positive
from memory_mosaics.experiments.induction import TaskConfig, run_comparison

HELP = "Single-block induction head (Section 3): one-block Memory Mosaic versus one-block GPT on recurring bigrams."


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", type=out_folder, default="runs/induction", help="report folder")
    p.add_argument("--steps", type=positive, default=300, help="training steps for each model")
    p.add_argument("--seed", type=int, default=0, help="seed for initialisation and batches")
    p.add_argument("--vocab-size", type=int, default=TaskConfig.vocab_size)
    p.add_argument("--seq-len", type=int, default=TaskConfig.seq_len)
    p.add_argument("--pairs", type=int, default=TaskConfig.n_pairs, help="(trigger, target) bigrams per sequence")
    p.add_argument("--occurrences", type=int, default=TaskConfig.occurrences, help="occurrences of each bigram")


def run(args: argparse.Namespace) -> int:
    try:
        task = TaskConfig(args.vocab_size, args.seq_len, args.pairs, args.occurrences)
    except ValueError as e:
        print(f"mosaic induction: error: {e}", file=sys.stderr)
        return 2
    results = run_comparison(task, args.steps, args.seed, progress=True)
    args.out.mkdir(parents=True, exist_ok=True)
    record = {"task": asdict(task), "steps": args.steps, "seed": args.seed, "results": results}
    (args.out / "induction.json").write_text(json.dumps(record, indent=2) + "\n")
    for name, r in results.items():
        print(f"{name:7s} accuracy {r['accuracy']:.3f}  loss {r['final_loss']:.3f}  ({r['train_seconds']:.1f} s)")
    print(f"wrote {args.out / 'induction.json'}")
    return 0
