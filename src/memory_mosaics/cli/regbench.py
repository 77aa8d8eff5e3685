"""``mosaic regbench``: in-context language learning on random regular languages (Section 7, Figure 9).

The default is a CPU run (54 min on 2 idle cores): the in-context 2-/3-gram baselines, then a Memory Mosaic and a GPT of
the same shape trained on N = 100 and N = 500 automata for a budget of about 200 optimiser steps each (lr 2e-3), scored
on 500 held-out automata. The shape and options are those of the authors' RegBench glue (2 layers, 8 heads, d = 128,
dropout 0.05, no biases, their Library initialisation with logits scaled by 1/√d); ``--glue`` also takes the glue's
schedule (lr 5e-4, 200 epochs: about an hour per run on a CPU core). ``--paper`` switches to the paper's sweep, with the
default's model options: N ∈ {100, 500, 1000, 2500, 40000}, depth {2, 4, 8}, heads {2, 4, 8}, d {64, 128, 256}, weight
decay {0.01, 0.1}, lr 2.5e-4, 200 epochs with validation every epoch (the epoch count {1..200} is chosen on validation
inside each run). For every (model, N) the grid point with the best validation value is reported: by validation loss
(the benchmark code's checkpoint rule) or, with ``--select accuracy``, by validation accuracy (the paper's metric; it
does not name the one it selected on). Every run records the checkpoint of both rules, so switching rules re-reads
finished runs. Finished runs (metrics.json present) are reused, so a sweep resumes.

``--models lstm mamba rwkv`` adds the compressed-state baselines of Figure 9 (``torch.nn.LSTM``; Mamba and RWKV-4 of
Hugging Face ``transformers``, on their pure-PyTorch paths), each with the depth and width of the grid point and its
body matched to the Memory Mosaic's of that shape (``experiments.regbench.train`` says which options apply to them)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from memory_mosaics.cli.types import device_name, natural, out_folder, positive
from memory_mosaics.experiments.regbench.sweep import (
    Grid,
    ngram_baselines,
    run_dir,
    sweep_configs,
    train_all,
    write_report,
)
from memory_mosaics.experiments.regbench.train import MODELS, SELECTION_RULES, RegBenchConfig
from memory_mosaics.models import INITS

HELP = (
    "RegBench in-context language learning (Figure 9): Memory Mosaic vs GPT (and LSTM, Mamba, RWKV) vs in-context "
    "n-grams."
)

PAPER_GRID = {
    "n_train": [100, 500, 1000, 2500, 40000],
    "n_layer": [2, 4, 8],
    "n_head": [2, 4, 8],
    "n_embd": [64, 128, 256],
    "weight_decay": [0.01, 0.1],
}


# the model of the authors' RegBench glue for Memory Mosaics (MM: ICLL/configs/experiment/dfa/mm.yaml and
# src/models/sequence/mm.py; docs/regbench.md §5), which the CPU default and --glue both train
GLUE_MODEL: dict[str, Any] = {
    "n_embd": [128],
    "n_head": [8],
    "dropout": 0.05,
    "bias": False,
    "scale_logits": True,
    "init": "library",
}

# the CPU default of every flag a preset may change
CPU_DEFAULTS: dict[str, Any] = {
    **GLUE_MODEL,
    "n_train": [100, 500],
    "n_layer": [2],
    "weight_decay": [0.1],
    "lr": 2e-3,  # 4x the glue's 5e-4: the same model in 200 steps instead of 800 (results/regbench/README.md)
    "step_budget": 200,
    "eval_every": 0,
}

# what --paper changes, for the flags not given (so `--paper --n-train 100` sweeps one N)
PAPER_SETTINGS: dict[str, Any] = {
    **PAPER_GRID,
    "step_budget": 0,  # full 200 epochs
    "eval_every": 1,  # validation every epoch: the epoch count {1..200} is selected on it
    "lr": 2.5e-4,  # the benchmark's DFA sweeps
}

# what --glue changes, for the flags not given: the glue's model and its schedule
GLUE_SETTINGS: dict[str, Any] = {
    **GLUE_MODEL,
    "lr": 5e-4,
    "step_budget": 0,  # the full 200 epochs
    "eval_every": 10,
}


def _h(text: str, key: str) -> str:
    return f"{text} (default {CPU_DEFAULTS[key]}; --paper / --glue change it unless given)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", type=out_folder, default="runs/regbench", help="report folder (one sub-folder per run)")
    p.add_argument(
        "--paper",
        action="store_true",
        help="the paper's sweep (GPU scale): grids, 200 epochs, validation every epoch, lr 2.5e-4, for every flag "
        "not given",
    )
    p.add_argument(
        "--glue",
        action="store_true",
        help="the authors' Memory Mosaic RegBench set-up (d 128, 8 heads, dropout 0.05, lr 5e-4, no biases, Library "
        "init, logits / sqrt(d), 200 epochs) for every flag not given; about an hour per run on one core",
    )
    p.add_argument(
        "--models",
        nargs="+",
        default=["mosaic", "gpt"],
        choices=MODELS,
        help="models to train (default mosaic gpt); lstm, mamba and rwkv are the recurrent baselines, matched in size "
        "to the Memory Mosaic of the same shape (mamba and rwkv need transformers: the hf extra)",
    )
    _add_preset_arguments(p)
    p.add_argument("--grad-clip", type=float, default=1.0, help="gradient-norm clip (0 = off)")
    p.add_argument("--n-val", type=positive, default=500, help="validation automata (model selection)")
    p.add_argument("--n-test", type=positive, default=500, help="test automata (the reported numbers)")
    p.add_argument("--seed", type=int, default=0, help="seed for initialisation and batch order")
    p.add_argument("--data-seed", type=int, default=0, help="seed of the automata and sequences of every split")
    p.add_argument(
        "--device",
        default=None,
        type=device_name,
        help="torch device (default: cuda when available, else mps, else cpu)",
    )
    p.add_argument("--threads", type=natural, default=0, help="torch CPU threads (0 = torch's default)")
    p.add_argument(
        "--iid",
        action="store_true",
        help="Appendix D.5: validate and test on new sequences of the training automata (in distribution)",
    )
    p.add_argument(
        "--select",
        default="loss",
        choices=list(SELECTION_RULES),
        help="validation metric that picks the epoch inside a run and the grid point across runs: loss (the benchmark "
        "code's checkpoint rule) or accuracy (the paper's metric); every run records both",
    )
    p.add_argument("--list", action="store_true", help="print the runs this command would train, then stop")
    p.add_argument("--skip-ngram", action="store_true", help="do not compute the n-gram baselines")


def _add_preset_arguments(p: argparse.ArgumentParser) -> None:
    """The grid, the schedule and the model options: the flags a preset may change. They default to None here and
    are filled by ``resolve``, so a flag given explicitly always wins."""
    p.add_argument("--n-train", nargs="+", type=positive, help=_h("N values: numbers of training automata", "n_train"))
    p.add_argument("--n-layer", nargs="+", type=positive, help=_h("depth grid", "n_layer"))
    p.add_argument(
        "--n-head",
        nargs="+",
        type=positive,
        help=_h(
            "heads grid (contextual = persistent units; the recurrent baselines have none, but their size is matched "
            "to the Mosaic of these heads)",
            "n_head",
        ),
    )
    p.add_argument("--n-embd", nargs="+", type=positive, help=_h("embedding dimension grid", "n_embd"))
    p.add_argument("--weight-decay", nargs="+", type=float, help=_h("AdamW weight decay grid", "weight_decay"))
    p.add_argument("--lr", type=float, help=_h("peak learning rate (both models)", "lr"))
    p.add_argument("--epochs", type=positive, default=200, help="maximum epochs (the benchmark's 200)")
    p.add_argument(
        "--step-budget",
        type=natural,
        help=_h(
            "cap the optimiser steps per run: epochs = min(--epochs, ceil(budget / steps per epoch)); 0 = no cap",
            "step_budget",
        ),
    )
    p.add_argument("--batch-size", type=positive, default=32, help="sequences per batch (the benchmark's 32)")
    p.add_argument(
        "--eval-every", type=natural, help=_h("epochs between validation passes; 0 = about 10 per run", "eval_every")
    )
    p.add_argument(
        "--dropout",
        type=float,
        help=_h("dropout for every model (the LSTM: between layers; not Mamba, RWKV)", "dropout"),
    )
    p.add_argument(
        "--bias",
        action=argparse.BooleanOptionalAction,
        help=_h(
            "biases in linear layers and LayerNorms (the authors' glue has none: --no-bias; the recurrent baselines' "
            "cells keep theirs)",
            "bias",
        ),
    )
    p.add_argument(
        "--scale-logits",
        action=argparse.BooleanOptionalAction,
        help=_h("multiply the logits by 1/sqrt(d), as the authors' RegBench glue does", "scale_logits"),
    )
    p.add_argument(
        "--init",
        choices=INITS,
        help=_h(
            "initialisation: GPT-2's normal(0.02), or the authors' Library (fan-in scaled; goes with --scale-logits); "
            "the recurrent baselines' cells keep their libraries'",
            "init",
        ),
    )


def resolve(args: argparse.Namespace) -> None:
    """Fill every flag not given from the chosen preset, else from the CPU default."""
    preset = PAPER_SETTINGS if args.paper else GLUE_SETTINGS if args.glue else {}
    for key, value in {**CPU_DEFAULTS, **preset}.items():
        if getattr(args, key) is None:
            setattr(args, key, value)


def run_configs(args: argparse.Namespace) -> list[RegBenchConfig]:
    """Every (model, N, grid point) run of the resolved flags, in the order they are trained (small N first)."""
    grid = Grid(args.n_train, args.models, args.n_layer, args.n_head, args.n_embd, args.weight_decay)
    base = RegBenchConfig(
        dropout=args.dropout,
        bias=args.bias,
        scale_logits=args.scale_logits,
        init=args.init,
        lr=args.lr,
        epochs=args.epochs,
        batch_size=args.batch_size,
        grad_clip=args.grad_clip,
        n_val=args.n_val,
        n_test=args.n_test,
        seed=args.seed,
        data_seed=args.data_seed,
    )
    return sweep_configs(grid, base, args.step_budget, args.eval_every)


def run(args: argparse.Namespace) -> int:
    if args.paper and args.glue:
        print("mosaic regbench: error: --paper and --glue are two presets; pick one", file=sys.stderr)
        return 2
    resolve(args)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    out: Path = args.out
    root = out / "iid" if args.iid else out
    try:
        configs = run_configs(args)
    except (ValueError, ImportError) as e:  # ImportError: mamba or rwkv without transformers
        print(f"mosaic regbench: error: {e}", file=sys.stderr)
        return 2
    if args.list:
        for cfg in configs:
            print(f"{run_dir(root, cfg)}  epochs {cfg.epochs}  eval every {cfg.eval_every}")
        print(f"{len(configs)} runs")
        return 0
    out.mkdir(parents=True, exist_ok=True)
    resolved = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if not k.startswith("_")}
    (out / "config.json").write_text(
        json.dumps({"args": resolved, "runs": [asdict(c) for c in configs]}, indent=2) + "\n"
    )
    # with --iid the n-gram test set depends on N: score it on the first N's (the table says which)
    iid_n_train = args.n_train[0] if args.iid else 0
    ngram: dict[str, dict[str, float]] = {}
    if not args.skip_ngram:
        t0 = time.perf_counter()
        ngram = ngram_baselines(args.n_test, args.data_seed, iid_n_train=iid_n_train)
        (out / "ngram.json").write_text(json.dumps(ngram, indent=2) + "\n")
        for name, m in ngram.items():
            print(f"in-context {name}: accuracy {m['accuracy']:.3f}  TVD {m['tvd']:.3f}")
        print(f"  ({time.perf_counter() - t0:.1f} s)")
    results = train_all(configs, root, iid=args.iid, device=args.device)
    write_report(out, results, ngram, args.select, iid_n_train=iid_n_train, n_test=args.n_test)
    print(f"wrote {out / 'table.md'}")
    return 0
