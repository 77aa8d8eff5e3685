"""The results folder's Markdown table and plots: accuracy against length (needles, variable tracking), against
key-value pairs (MQAR, one panel per length) and against shots (few-shot)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from memory_mosaics.experiments.figures import pyplot, save_figure

AXIS = {"mqar": "n_kv", "needle": "seq_len", "vt": "seq_len", "fewshot": "shots"}
AXIS_LABEL = {"n_kv": "key-value pairs", "seq_len": "sequence length (tokens)", "shots": "shots per class (k)"}


def _cell(row: dict[str, Any]) -> str:
    if row.get("accuracy") is None:
        return "n/a"
    return f"{row['accuracy']:.3f}"


def _point(row: dict[str, Any], task: str) -> str:
    if task == "mqar":
        return f"({row['seq_len']}, {row['n_kv']})"
    if task == "fewshot":
        return f"k={row['shots']}"
    return str(row["seq_len"])


def table(results: dict[str, Any]) -> str:
    """One row per (model, width), one column per evaluation point: accuracy at the scored positions."""
    task = results["config"]["task"]["task"]
    runs = results["runs"]
    points = [_point(r, task) for r in runs[0]["eval"]]
    head = ["model", "d", "body params", "train s", *points]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    limited = False
    for run in runs:
        cells = [_cell(r) for r in run["eval"]]
        limited |= any(r.get("accuracy") is None for r in run["eval"])
        row = [run["label"], str(run["n_embd"]), f"{run['params_body']:,}", f"{run['train_seconds']:.0f}", *cells]
        lines.append("| " + " | ".join(row) + " |")
    text = "\n".join(lines) + "\n"
    if limited:  # each such row says why in results.json ("note")
        text += "\nn/a: longer than the model's learned positions (GPT-2 cannot read past its training length).\n"
    return text


def finetune_table(results: dict[str, Any]) -> str:
    """The context-extension fine-tune, where the run made one: accuracy at the fine-tune length after k steps
    there (0: as trained), one row per (model, width). Empty otherwise."""
    runs = [r for r in results["runs"] if r.get("finetune")]
    if not runs:
        return ""
    s = results["config"]["suite"]
    lr = s["finetune_lr"] if s["finetune_lr"] is not None else s["lr"] * s["min_lr_frac"]
    steps = [row["steps"] for row in runs[0]["finetune"]]
    head = ["model", "d", *(f"{k} step{'' if k == 1 else 's'}" for k in steps)]
    lines = [
        f"\n## Context extension: accuracy at {s['finetune_len']} tokens after k fine-tune steps there\n",
        f"Trained at {cfg_train_len(results)}; each fine-tune starts from the trained model and its optimiser state, "
        f"constant lr {lr:g}, batches of {s['batch_size']}; the test sequences are those of the table above.\n",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    for run in runs:
        lines.append("| " + " | ".join([run["label"], str(run["n_embd"]), *map(_cell, run["finetune"])]) + " |")
    return "\n".join(lines) + "\n"


def write_report(results: dict[str, Any], out_dir: Path) -> list[Path]:
    """results.md (configuration line, table, wall time) and the task's plot; returns the files written."""
    cfg = results["config"]
    task = cfg["task"]["task"]
    s = cfg["suite"]
    md = [
        f"# {task}: accuracy at the scored positions\n",
        f"{s['n_layer']} layers, {s['n_head']} heads, {s['steps']} steps of {s['batch_size']} sequences, lr {s['lr']}, "
        f"seed {s['seed']}, data seed {cfg['task']['data_seed']}, {s['eval_sequences']} test sequences per point, "
        f"device {cfg['device']}; bodies matched to Memory Mosaic v1's (12·d² per block).\n",
        table(results),
        finetune_table(results),
        f"\nWall time: {results.get('wall_seconds', 0.0):.0f} s.\n",
    ]
    (out_dir / "results.md").write_text("\n".join(md))
    return [out_dir / "results.md", plot(results, out_dir / f"accuracy_vs_{AXIS[task]}.png")]


def plot(results: dict[str, Any], path: Path) -> Path:
    plt = pyplot()
    task = results["config"]["task"]["task"]
    axis = AXIS[task]
    runs = results["runs"]
    models = list(dict.fromkeys(r["model"] for r in runs))
    widths = sorted({r["n_embd"] for r in runs})
    colour = {m: f"C{i % 10}" for i, m in enumerate(models)}  # one colour per model, one line style per width
    style = {w: ("-", "--", ":", "-.")[i % 4] for i, w in enumerate(widths)}
    panels = sorted({r["seq_len"] for r in runs[0]["eval"]}) if task == "mqar" else [None]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.6), squeeze=False, sharey=True)
    for ax, length in zip(axes[0], panels, strict=True):
        for run in runs:
            rows = [r for r in run["eval"] if length is None or r["seq_len"] == length]
            pts = [(r[axis], r["accuracy"]) for r in rows if r.get("accuracy") is not None]
            if pts:
                xs, ys = zip(*pts, strict=True)
                ax.plot(
                    xs,
                    ys,
                    marker="o",
                    ms=3,
                    color=colour[run["model"]],
                    ls=style[run["n_embd"]],
                    label=f"{run['label']}, d {run['n_embd']}",
                )
        if axis in ("seq_len", "n_kv"):
            ax.set_xscale("log", base=2)
        if task in ("needle", "vt"):
            ax.axvline(cfg_train_len(results), color="grey", ls=":", lw=1)
        if task == "fewshot":
            ax.axhline(1 / results["config"]["task"]["classes"], color="grey", ls=":", lw=1)
            ax.axvline(max(results["config"]["task"]["train_shots"]), color="grey", ls=":", lw=1)
        ax.set_xlabel(AXIS_LABEL[axis])
        ax.set_title(f"{task}" + (f", length {length}" if length else ""))
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("accuracy")
    axes[0][-1].legend(fontsize=7)
    return save_figure(fig, path)


def cfg_train_len(results: dict[str, Any]) -> int:
    return int(results["config"]["task"]["train_len"])
