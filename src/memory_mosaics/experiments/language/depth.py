"""Figures 7 and 13: training and validation loss against iterations, Memory Mosaic versus GPT, one panel per depth.

Reads run folders written by ``mosaic train`` (``run.json`` + ``log.jsonl``); the paper trains both architectures with
the same hyper-parameters on the same batches (same data, seed and batch size), which this command checks.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from memory_mosaics.experiments.language.common import PAPER, colour, md_table, panel_grid, smooth, write_outputs

NAME = "depth"
# options that may differ between the runs of one panel without changing the batches or the hyper-parameters
IGNORED = {"arch", "out_dir", "resume", "pos", "progress", "tensorboard", "device", "threads", "compile", "dtype"}
IGNORED_MOSAIC = {"pos"}  # recorded for every run, meaningless for a Memory Mosaic
IGNORED_GPT = {"pmem_size", "pmem_count", "persistent"}


def read_run(run_dir: Path) -> dict[str, Any]:
    from memory_mosaics.train.log import read_log

    run = json.loads((run_dir / "run.json").read_text())
    log = [r for r in read_log(run_dir) if isinstance(r, dict)]
    train = [(r["step"], r["loss"]) for r in log if "loss" in r]
    val = [(r["step"], r["val_loss"]) for r in log if "val_loss" in r]
    cfg = run["train"]
    kind = run["model_type"] if run["model_type"] != "gpt" else f"gpt-{run['model'].get('pos', 'learned')}"
    return {
        "run": str(run_dir),
        "kind": kind,
        "n_layer": int(run["model"]["n_layer"]),
        "n_embd": int(run["model"]["n_embd"]),
        "params": run.get("params"),
        "train": cfg,
        "train_curve": train,
        "val_curve": val,
    }


def config_differences(runs: list[dict[str, Any]]) -> list[str]:
    """Options that differ between runs of the same depth (other than the architecture itself)."""
    notes = []
    for depth in sorted({r["n_layer"] for r in runs}):
        group = [r for r in runs if r["n_layer"] == depth]
        keys = set().union(*(r["train"] for r in group)) - IGNORED
        for k in sorted(keys):
            vals = {
                json.dumps(r["train"].get(k))
                for r in group
                if not (r["kind"] == "mosaic" and k in IGNORED_MOSAIC)
                and not (r["kind"].startswith("gpt") and k in IGNORED_GPT)
            }
            if len(vals) > 1:
                notes.append(f"depth {depth}: `{k}` differs ({', '.join(sorted(vals))})")
    return notes


def summarise(r: dict[str, Any], last: int) -> None:
    """The run's final numbers, added to ``r``: mean of the ``last`` logged training losses, last validation loss."""
    tail = [v for _, v in r["train_curve"][-last:]]
    r["final_train_loss"] = float(np.mean(tail)) if tail else None
    r["final_val_loss"] = r["val_curve"][-1][1] if r["val_curve"] else None
    r["steps"] = r["train_curve"][-1][0] if r["train_curve"] else 0


def run_label(r: dict[str, Any]) -> str:
    return "Memory Mosaic" if r["kind"] == "mosaic" else f"GPT ({r['kind'][4:]})"


def plot_depth(ax: Any, runs: list[dict[str, Any]], depth: int, smoothing: int) -> None:
    """One panel: each run's smoothed training curve (solid) and its validation points (dashed)."""
    for r in runs:
        label, c = run_label(r), colour(r["kind"])
        if r["train_curve"]:
            s, loss = zip(*r["train_curve"], strict=True)
            ax.plot(s, smooth(loss, smoothing), color=c, lw=1, alpha=0.8, label=f"{label} train")
        if r["val_curve"]:
            s, loss = zip(*r["val_curve"], strict=True)
            ax.plot(s, loss, color=c, lw=1.5, ls="--", marker="o", ms=3, label=f"{label} valid")
    ax.set_title(f"{depth} block{'s' if depth > 1 else ''}")
    ax.set_xlabel("iteration")
    ax.set_ylabel("loss")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)


def depth(run_dirs: list[Path], out: Path, smoothing: int = 5, last: int = 5) -> dict[str, Any]:
    """Figures 7/13 from ``mosaic train`` run folders (any depths, both architectures) into ``out``: training curves
    smoothed over ``smoothing`` logged losses; final training loss the mean of the ``last`` logged ones."""
    runs = [read_run(Path(r)) for r in run_dirs]
    depths = sorted({r["n_layer"] for r in runs})
    fig, axes = panel_grid(len(depths))
    rows = []
    for ax, n_layer in zip(axes, depths, strict=True):
        group = [r for r in runs if r["n_layer"] == n_layer]
        plot_depth(ax, group, n_layer, smoothing)
        for r in group:
            summarise(r, last)
            rows.append([n_layer, run_label(r), r["params"], r["steps"], r["final_train_loss"], r["final_val_loss"]])
    fig.suptitle("Training (solid) and validation (dashed) loss by depth (cf. Figures 7 and 13)")
    notes = config_differences(runs)
    numbers = {"figure": "7, 13", "runs": [{k: v for k, v in r.items() if k != "train"} for r in runs]}
    numbers["config_differences"] = notes
    write_outputs(out, NAME, numbers, depth_section(rows, notes, last), fig)
    return numbers


def depth_section(rows: list[list[Any]], notes: list[str], last: int) -> str:
    section = [
        "## Depth comparison (Figures 7 and 13)",
        "",
        f"Training and validation loss against iterations; {PAPER}: the Memory Mosaic is slightly better at small "
        "depth and the curves become indistinguishable as depth grows.",
        "",
        "![depth](depth.png)",
        "",
        md_table(
            ["blocks", "model", "params (non-emb.)", "steps", f"train loss (last {last} logs)", "valid loss"],
            [[*r[:2], f"{r[2] / 1e6:.3f}M" if r[2] else "?", *r[3:]] for r in rows],
        ),
        "",
    ]
    section += [f"- {n}" for n in notes] or ["Runs of each depth share every hyper-parameter, the data and the seed."]
    return "\n".join(section)
