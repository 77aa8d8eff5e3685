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
finished runs. Finished runs (metrics.json present) are reused, so a sweep resumes."""

from __future__ import annotations

import argparse
import itertools
import json
import math
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from memory_mosaics.cli.types import device_name, natural, out_folder, positive
from memory_mosaics.experiments.regbench.automata import make_iid_split, make_split
from memory_mosaics.experiments.regbench.metrics import score
from memory_mosaics.experiments.regbench.ngram import ngram_distributions
from memory_mosaics.experiments.regbench.report import markdown_table, plot
from memory_mosaics.experiments.regbench.train import SELECTION_RULES, RunConfig, better, train_run
from memory_mosaics.models import INITS

HELP = "RegBench in-context language learning (Figure 9): Memory Mosaic vs GPT vs in-context n-grams."

PAPER_GRID = {
    "n_train": [100, 500, 1000, 2500, 40000],
    "n_layer": [2, 4, 8],
    "n_head": [2, 4, 8],
    "n_embd": [64, 128, 256],
    "weight_decay": [0.01, 0.1],
}


# the model of the authors' RegBench glue for Memory Mosaics (MM: ICLL/configs/experiment/dfa/mm.yaml and
# src/models/sequence/mm.py; spec §5), which the CPU default and --glue both train
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
    p.add_argument("--models", nargs="+", default=["mosaic", "gpt"], choices=["mosaic", "gpt"], help="models to train")
    # flags a preset may set default to None here and are filled by `resolve`: a flag given explicitly always wins
    p.add_argument("--n-train", nargs="+", type=positive, help=_h("N values: numbers of training automata", "n_train"))
    p.add_argument("--n-layer", nargs="+", type=positive, help=_h("depth grid", "n_layer"))
    p.add_argument(
        "--n-head", nargs="+", type=positive, help=_h("heads grid (contextual = persistent units)", "n_head")
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
    p.add_argument("--dropout", type=float, help=_h("dropout for both models", "dropout"))
    p.add_argument(
        "--bias",
        action=argparse.BooleanOptionalAction,
        help=_h("biases in linear layers and LayerNorms (the authors' glue has none: --no-bias)", "bias"),
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
            "initialisation: GPT-2's normal(0.02), or the authors' Library (fan-in scaled; goes with --scale-logits)",
            "init",
        ),
    )
    p.add_argument("--grad-clip", type=float, default=1.0, help="gradient-norm clip (0 = off)")
    p.add_argument("--n-val", type=positive, default=500, help="validation automata (model selection)")
    p.add_argument("--n-test", type=positive, default=500, help="test automata (the reported numbers)")
    p.add_argument("--seed", type=int, default=0, help="seed for initialisation and batch order")
    p.add_argument("--data-seed", type=int, default=0, help="seed of the automata and sequences of every split")
    p.add_argument(
        "--device", default=None, type=device_name, help="torch device (default: cuda when available, else cpu)"
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


def resolve(args: argparse.Namespace) -> None:
    """Fill every flag not given from the chosen preset, else from the CPU default."""
    preset = PAPER_SETTINGS if args.paper else GLUE_SETTINGS if args.glue else {}
    for key, value in {**CPU_DEFAULTS, **preset}.items():
        if getattr(args, key) is None:
            setattr(args, key, value)


def run_configs(args: argparse.Namespace) -> list[RunConfig]:
    """Every (model, N, grid point) run, in the order they are trained (small N first)."""
    configs = []
    for n, model, layers, heads, d, wd in itertools.product(
        args.n_train, args.models, args.n_layer, args.n_head, args.n_embd, args.weight_decay
    ):
        if d % heads:
            continue
        steps_per_epoch = math.ceil(n / args.batch_size)
        epochs = args.epochs
        if args.step_budget > 0:
            epochs = max(1, min(epochs, math.ceil(args.step_budget / steps_per_epoch)))
        eval_every = args.eval_every or max(1, epochs // 10)
        configs.append(
            RunConfig(
                model=model,
                n_train=n,
                n_layer=layers,
                n_head=heads,
                n_embd=d,
                dropout=args.dropout,
                bias=args.bias,
                scale_logits=args.scale_logits,
                init=args.init,
                lr=args.lr,
                weight_decay=wd,
                epochs=epochs,
                batch_size=args.batch_size,
                grad_clip=args.grad_clip,
                eval_every=eval_every,
                n_val=args.n_val,
                n_test=args.n_test,
                seed=args.seed,
                data_seed=args.data_seed,
            )
        )
    if not configs:
        raise ValueError("no grid point has --n-embd divisible by --n-head")
    return configs


def run_dir(out: Path, cfg: RunConfig) -> Path:
    return out / cfg.model / f"N{cfg.n_train}" / f"L{cfg.n_layer}_H{cfg.n_head}_d{cfg.n_embd}_wd{cfg.weight_decay}"


def ngram_baselines(
    n_test: int, data_seed: int, orders: tuple[int, ...] = (2, 3), iid_n_train: int = 0
) -> dict[str, dict[str, float]]:
    """Pooled metrics of the in-context n-grams on the test split (or, with ``iid_n_train``, on the IID test split of
    that many training automata)."""
    test = make_split("test", n_test, data_seed)
    if iid_n_train:
        test = make_iid_split(make_split("train", iid_n_train, data_seed), "test", n_test, data_seed)
    exact = test.distributions()
    return {f"{n}-gram": score([ngram_distributions(s, n) for s in test.sequences], exact) for n in orders}


def select(results: list[dict[str, Any]], rule: str = "loss") -> list[dict[str, Any]]:
    """For every (model, N), the run whose checkpoint chosen by ``rule`` has the best validation value (the paper
    picks settings on validation); its ``best_epoch``, ``val`` and ``test`` are those of that checkpoint."""
    best: dict[tuple[str, int], dict[str, Any]] = {}
    for r in results:
        r = {**r, **r["selection"][rule], "select": rule}
        key = (r["model"], r["n_train"])
        if key not in best or better(rule, r["val"][rule], best[key]["val"][rule]):
            best[key] = r
    return list(best.values())


def run(args: argparse.Namespace) -> int:
    if args.paper and args.glue:
        print("mosaic regbench: error: --paper and --glue are two presets; pick one", file=sys.stderr)
        return 2
    resolve(args)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    out: Path = args.out
    try:
        configs = run_configs(args)
    except ValueError as e:
        print(f"mosaic regbench: error: {e}", file=sys.stderr)
        return 2
    if args.list:
        for cfg in configs:
            print(f"{run_dir(out / 'iid' if args.iid else out, cfg)}  epochs {cfg.epochs}  eval every {cfg.eval_every}")
        print(f"{len(configs)} runs")
        return 0
    out.mkdir(parents=True, exist_ok=True)
    resolved = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if not k.startswith("_")}
    (out / "config.json").write_text(
        json.dumps({"args": resolved, "runs": [asdict(c) for c in configs]}, indent=2) + "\n"
    )

    ngram: dict[str, dict[str, float]] = {}
    if not args.skip_ngram:
        t0 = time.perf_counter()
        # with --iid the n-gram test set depends on N: score it on the first N's (the table says which)
        ngram = ngram_baselines(args.n_test, args.data_seed, iid_n_train=args.n_train[0] if args.iid else 0)
        (out / "ngram.json").write_text(json.dumps(ngram, indent=2) + "\n")
        for name, m in ngram.items():
            print(f"in-context {name}: accuracy {m['accuracy']:.3f}  TVD {m['tvd']:.3f}")
        print(f"  ({time.perf_counter() - t0:.1f} s)")

    # the held-out splits are the same for every run: build them once
    splits = {
        "val": make_split("val", args.n_val, args.data_seed),
        "test": make_split("test", args.n_test, args.data_seed),
    }
    results = []
    for i, cfg in enumerate(configs, 1):
        d = run_dir(out / "iid" if args.iid else out, cfg)
        done = d / "metrics.json"
        previous = json.loads(done.read_text()) if done.is_file() else {}
        if previous.get("config") == asdict(cfg) and "selection" in previous:  # older runs recorded one rule only
            r = previous
            print(f"[{i}/{len(configs)}] reuse {d}")
        else:
            print(f"[{i}/{len(configs)}] train {d} ({cfg.epochs} epochs)")
            splits["train"] = make_split("train", cfg.n_train, cfg.data_seed)
            if args.iid:
                splits["val"] = make_iid_split(splits["train"], "val", args.n_val, args.data_seed)
                splits["test"] = make_iid_split(splits["train"], "test", args.n_test, args.data_seed)
            r = train_run(cfg, d, splits, device=args.device)
        print(f"  {cfg.model:6s} N={cfg.n_train:<6d} params {r['params']:,}  ({r['train_seconds']:.0f} s)")
        for rule, s in r["selection"].items():
            print(
                f"    best val {rule:8s} epoch {s['best_epoch']:<4d} val loss {s['val']['loss']:.4f}  val acc "
                f"{s['val']['accuracy']:.3f}  test acc {s['test']['accuracy']:.3f}  test TVD {s['test']['tvd']:.3f}"
            )
        results.append(r)

    selected = select(results, args.select)
    (out / "results.json").write_text(json.dumps({"ngram": ngram, "selected": selected}, indent=2) + "\n")
    table = markdown_table(selected, ngram, iid=args.iid)
    title = (
        f"IID test: new sequences of the N training automata (n-grams: N = {args.n_train[0]})"
        if args.iid
        else (f"{args.n_test} held-out automata")
    )
    rule = f"Checkpoints and grid points selected by validation {args.select}.\n\n"
    (out / "table.md").write_text(f"# RegBench: test accuracy and TVD ({title})\n\n" + rule + table)
    print(table)
    if selected or ngram:
        print(f"wrote {plot(selected, ngram, out / 'regbench.png', iid=args.iid)}")
    print(f"wrote {out / 'table.md'}")
    return 0
