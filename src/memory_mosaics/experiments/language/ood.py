"""Figure 8: average loss at each position of the context window on text from another distribution than the training
set (the paper: Simple English Wikipedia for models trained on BabiStories), and where the curves cross."""

from __future__ import annotations

import argparse
import itertools
from typing import Any

import numpy as np

from memory_mosaics.cli.types import natural, positive
from memory_mosaics.experiments.language.common import (
    PAPER,
    add_checkpoint_arguments,
    add_data_arguments,
    colour,
    eval_tokens,
    load_checkpoints,
    md_table,
    pyplot,
    same_tokenizer_note,
    smooth,
    write_outputs,
)
from memory_mosaics.experiments.language.positions import crossings, per_position_loss

NAME = "ood"


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_checkpoint_arguments(p, "checkpoints or run folders (both architectures), optionally LABEL=PATH")
    add_data_arguments(p)
    p.add_argument("--context", type=natural, default=0, help="window length (default: each model's training context)")
    p.add_argument("--smooth", type=positive, default=9, help="moving average (positions) before finding the crossing")


def run(args: argparse.Namespace) -> dict[str, Any]:
    cks = load_checkpoints(args.checkpoints, args.device)
    results, source = [], ""
    for ck in cks:
        tokens, source = eval_tokens(ck, args)
        r = per_position_loss(ck.model, tokens, args.context or ck.block_size, args.batch_size, args.max_windows)
        results.append({**ck.describe(), "source": source, **r})
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for ck, r in zip(cks, results, strict=True):
        pp = np.asarray(r["per_position"])
        ax.plot(pp, color=colour(ck.kind), alpha=0.25, lw=0.7)
        ax.plot(smooth(pp, args.smooth), color=colour(ck.kind), lw=1.6, label=f"{ck.label} (mean {r['loss']:.3f})")
    numbers: dict[str, Any] = {"figure": "8", "source": source, "smooth": args.smooth, "models": results}
    mosaics = [i for i, c in enumerate(cks) if c.kind == "mosaic"]
    gpts = [i for i, c in enumerate(cks) if c.kind.startswith("gpt")]
    cross_text = "Need one Memory Mosaic and one GPT to locate the crossing."
    if mosaics and gpts:
        a, b = results[mosaics[0]], results[gpts[0]]
        n = min(len(a["per_position"]), len(b["per_position"]))
        cross = crossings(smooth(a["per_position"][:n], args.smooth), smooth(b["per_position"][:n], args.smooth))
        cross["mosaic"], cross["gpt"] = a["label"], b["label"]
        numbers["crossing"] = cross
        if cross["below_from"] is not None:
            ax.axvline(cross["below_from"], color="k", ls=":", lw=1)
        where = (
            f"is below {b['label']} from position {cross['below_from']} to the end of the window"
            if cross["below_from"] is not None
            else f"is not below {b['label']} at the end of the window"
        )
        cross_text = (
            f"Smoothed over {args.smooth} positions, {a['label']} {where} (first below at {cross['first_below']}; "
            f"sign changes at {cross['sign_changes'][:10]}). The paper: about 50 tokens, in 512-token windows."
        )
    ax.set_xlabel("position in the window")
    ax.set_ylabel("mean loss")
    ax.set_title(f"Per-position loss on {source} (cf. Figure 8)", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    T = min(len(r["per_position"]) for r in results)
    cut = sorted({0, min(16, T), min(64, T), max(T // 2, min(64, T)), T})  # early, short-range, long-range positions
    spans = list(itertools.pairwise(cut))
    rows = [
        [r["label"], r["loss"], r["windows"], *[float(np.mean(r["per_position"][a:b])) for a, b in spans]]
        for r in results
    ]
    header = ["model", "mean loss", "windows", *[f"positions {a}-{b - 1}" for a, b in spans]]
    section = [
        "## Out-of-distribution per-position loss (Figure 8)",
        "",
        f"Mean loss at each position of the window on `{source}`. {PAPER}: Simple English Wikipedia, 12-block models "
        "trained on BabiStories; the Memory Mosaic is better after about 50 tokens.",
        "",
        "![ood](ood.png)",
        "",
        md_table(header, rows),
        "",
        cross_text,
        same_tokenizer_note(cks),
    ]
    write_outputs(args.out, NAME, numbers, "\n".join(section), fig)
    return numbers
