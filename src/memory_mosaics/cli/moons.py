"""``mosaic moons``: the three-moons experiment of Section 5, end to end, into one report folder."""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import fields

import torch

from memory_mosaics.cli.types import natural, out_folder, positive
from memory_mosaics.experiments.moons.run import MoonsEvalConfig, MoonsRunConfig, acceptance, run_all
from memory_mosaics.experiments.moons.train import MoonsTrainConfig, authors_config, one_head_config

HELP = "Three moons (Section 5, Figs. 4, 5, 10): 1-head vs 3-head complex memories, several seeds, report folder."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    d, e = MoonsTrainConfig(), MoonsEvalConfig()
    parser.add_argument("--out", type=out_folder, default="runs/moons", help="report folder (default runs/moons)")
    parser.add_argument("--seeds", type=positive, default=10, help="number of seeds per net (default 10)")
    parser.add_argument("--first-seed", type=natural, default=0, help="seeds are first-seed .. first-seed + seeds - 1")
    parser.add_argument("--heads", type=int, nargs="+", default=[1, 3], choices=[1, 3], help="nets to train")
    parser.add_argument("--iters", type=positive, default=d.iters, help=f"training iterations (default {d.iters})")
    parser.add_argument(
        "--batch-size", type=positive, default=d.batch_size, help=f"sequences per batch ({d.batch_size})"
    )
    parser.add_argument("--lr", type=float, default=d.lr, help=f"initial learning rate ({d.lr})")
    parser.add_argument("--lr-end", type=float, default=d.lr_end, help=f"final learning rate ({d.lr_end})")
    parser.add_argument("--clip", type=float, default=d.clip, help=f"loss clipping of each error ({d.clip})")
    parser.add_argument(
        "--short-len", type=natural, default=d.short_len, help=f"sequence length of phase 1, 0: none ({d.short_len})"
    )
    parser.add_argument(
        "--short-frac", type=float, default=d.short_frac, help=f"fraction of iterations in it ({d.short_frac:.3f})"
    )
    parser.add_argument(
        "--key-init-scale", type=float, default=d.key_init_scale, help=f"initial W_φ multiplier ({d.key_init_scale})"
    )
    parser.add_argument(
        "--final-clip", type=float, default=d.final_clip, help=f"loss clipping of phase 2 ({d.final_clip})"
    )
    parser.add_argument(
        "--restarts",
        type=positive,
        default=d.restarts,
        help=f"phase-1 candidates per seed, best loss kept ({d.restarts})",
    )
    parser.add_argument(
        "--rollout-iters",
        type=natural,
        default=d.rollout_iters,
        help=f"phase 3 of the three-head net: rollout fine-tuning iterations, 0: none ({d.rollout_iters})",
    )
    parser.add_argument(
        "--same-recipe", action="store_true", help="train the one-head net like the three-head one (default: 800 its)"
    )
    parser.add_argument("--unbalanced", action="store_true", help="draw batch combinations at random")
    parser.add_argument("--authors", action="store_true", help="the authors' recipe (batch 64, 500 its, lr 1e-2, ...)")
    parser.add_argument(
        "--eval-sequences", type=positive, default=e.sequences, help=f"sequences per curve ({e.sequences})"
    )
    parser.add_argument("--eval-seed", type=int, default=e.seed, help="seed of the evaluation sequences")
    parser.add_argument(
        "--curve-stride", type=positive, default=e.curve_stride, help="context step of the full curves (1)"
    )
    parser.add_argument("--threads", type=positive, default=2, help="CPU cores to use: worker processes of one thread")


def recipe(args: argparse.Namespace) -> MoonsTrainConfig:
    """The three-head net's recipe the flags give; a ValueError names a setting that cannot train."""
    if args.authors:
        return authors_config()
    return MoonsTrainConfig(
        iters=args.iters,
        batch_size=args.batch_size,
        lr=args.lr,
        lr_end=args.lr_end,
        clip=args.clip,
        short_len=args.short_len,
        short_frac=args.short_frac,
        key_init_scale=args.key_init_scale,
        final_clip=args.final_clip,
        restarts=args.restarts,
        balanced=not args.unbalanced,
        rollout_iters=args.rollout_iters,
    )


def run(args: argparse.Namespace) -> int:
    try:
        train = recipe(args)
    except ValueError as e:
        print(f"mosaic moons: error: {e}", file=sys.stderr)
        return 2
    cfg = MoonsRunConfig(
        heads=sorted(set(args.heads)),
        seeds=list(range(args.first_seed, args.first_seed + args.seeds)),
        train=train,
        train_one_head=train if args.same_recipe or args.authors else one_head_config(train),
        eval=MoonsEvalConfig(sequences=args.eval_sequences, seed=args.eval_seed, curve_stride=args.curve_stride),
        workers=max(1, args.threads),
    )
    if cfg.workers == 1:
        torch.set_num_threads(1)
    print(f"mosaic moons: {len(cfg.heads)} net(s) x {len(cfg.seeds)} seed(s), {cfg.workers} worker(s) -> {args.out}")
    print("train:", {f.name: getattr(train, f.name) for f in fields(train)})
    print("one-head net:", {k: getattr(cfg.train_one_head, k) for k in ("iters", "short_frac")})
    t0 = time.perf_counter()
    out = run_all(cfg)
    acc = acceptance(out)
    from memory_mosaics.experiments.moons.report import write_outputs  # matplotlib only now

    report = write_outputs(out, acc, args.out)
    print(json.dumps(acc, indent=1, default=str))
    print(f"total {time.perf_counter() - t0:.0f} s; report: {report}")
    return 0 if acc["all_ok"] else 1
