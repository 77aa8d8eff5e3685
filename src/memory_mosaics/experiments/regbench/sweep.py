"""A RegBench sweep: the runs of a grid, each trained once (a finished run is reused, so a sweep resumes), the best
grid point per (model, N) selected on validation, and the table and plot of the selected runs."""

from __future__ import annotations

import itertools
import json
import math
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch

from memory_mosaics.experiments.regbench.automata import Split, make_iid_split, make_split
from memory_mosaics.experiments.regbench.metrics import score
from memory_mosaics.experiments.regbench.ngram import ngram_distributions
from memory_mosaics.experiments.regbench.report import markdown_table, plot
from memory_mosaics.experiments.regbench.train import RegBenchConfig, better, train_run


@dataclass(frozen=True)
class Grid:
    """The values a sweep combines; every combination is one run, except widths the head count does not divide."""

    n_train: list[int]
    models: list[str]
    n_layer: list[int]
    n_head: list[int]
    n_embd: list[int]
    weight_decay: list[float]


def sweep_configs(grid: Grid, base: RegBenchConfig, step_budget: int = 0, eval_every: int = 0) -> list[RegBenchConfig]:
    """Every (N, model, depth, heads, width, weight decay) run of ``grid``, small N first, with the other settings
    of ``base``. A ``step_budget`` caps the optimiser steps: epochs = min(base.epochs, ceil(budget / steps per
    epoch)); ``eval_every`` 0 means about 10 validation passes per run."""
    configs = []
    for n, model, layers, heads, d, wd in itertools.product(
        grid.n_train, grid.models, grid.n_layer, grid.n_head, grid.n_embd, grid.weight_decay
    ):
        if d % heads:
            continue
        epochs = base.epochs
        if step_budget > 0:
            epochs = max(1, min(epochs, math.ceil(step_budget / math.ceil(n / base.batch_size))))
        every = eval_every or max(1, epochs // 10)
        configs.append(
            replace(
                base,
                model=model,
                n_train=n,
                n_layer=layers,
                n_head=heads,
                n_embd=d,
                weight_decay=wd,
                epochs=epochs,
                eval_every=every,
            )
        )
    if not configs:
        raise ValueError("no grid point has --n-embd divisible by --n-head")
    return configs


def run_dir(out: Path, cfg: RegBenchConfig) -> Path:
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


def train_all(
    configs: list[RegBenchConfig], root: Path, iid: bool = False, device: torch.device | str | None = None
) -> list[dict[str, Any]]:
    """Train every run into ``run_dir(root, cfg)``, or reuse it where that folder holds the metrics of the same
    configuration; prints one summary per run. With ``iid``, validation and test are new sequences of each run's
    training automata (Appendix D.5) instead of the held-out automata."""
    # the held-out splits are the same for every run (they depend on the data seed only): build them once
    first = configs[0]
    splits: dict[str, Split] = {
        "val": make_split("val", first.n_val, first.data_seed),
        "test": make_split("test", first.n_test, first.data_seed),
    }
    results = []
    for i, cfg in enumerate(configs, 1):
        d = run_dir(root, cfg)
        done = d / "metrics.json"
        previous = json.loads(done.read_text()) if done.is_file() else {}
        if previous.get("config") == asdict(cfg) and "selection" in previous:  # older runs recorded one rule only
            r = previous
            print(f"[{i}/{len(configs)}] reuse {d}")
        else:
            print(f"[{i}/{len(configs)}] train {d} ({cfg.epochs} epochs)")
            splits["train"] = make_split("train", cfg.n_train, cfg.data_seed)
            if iid:
                splits["val"] = make_iid_split(splits["train"], "val", cfg.n_val, cfg.data_seed)
                splits["test"] = make_iid_split(splits["train"], "test", cfg.n_test, cfg.data_seed)
            r = train_run(cfg, d, splits, device=device)
        print(f"  {cfg.model:6s} N={cfg.n_train:<6d} params {r['params']:,}  ({r['train_seconds']:.0f} s)")
        for rule, s in r["selection"].items():
            print(
                f"    best val {rule:8s} epoch {s['best_epoch']:<4d} val loss {s['val']['loss']:.4f}  val acc "
                f"{s['val']['accuracy']:.3f}  test acc {s['test']['accuracy']:.3f}  test TVD {s['test']['tvd']:.3f}"
            )
        results.append(r)
    return results


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


def write_report(
    out: Path,
    results: list[dict[str, Any]],
    ngram: dict[str, dict[str, float]],
    rule: str = "loss",
    iid_n_train: int = 0,
    n_test: int = 500,
) -> str:
    """results.json (the runs selected by ``rule`` and the n-gram baselines), table.md and regbench.png in ``out``;
    returns the table. ``iid_n_train`` (the N of the n-gram baselines) marks an IID test."""
    selected = select(results, rule)
    iid = bool(iid_n_train)
    (out / "results.json").write_text(json.dumps({"ngram": ngram, "selected": selected}, indent=2) + "\n")
    table = markdown_table(selected, ngram, iid=iid)
    title = (
        f"IID test: new sequences of the N training automata (n-grams: N = {iid_n_train})"
        if iid
        else (f"{n_test} held-out automata")
    )
    heading = f"Checkpoints and grid points selected by validation {rule}.\n\n"
    (out / "table.md").write_text(f"# RegBench: test accuracy and TVD ({title})\n\n" + heading + table)
    print(table)
    if selected or ngram:
        print(f"wrote {plot(selected, ngram, out / 'regbench.png', iid=iid)}")
    return table
