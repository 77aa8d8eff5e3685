"""Figure 8: average loss at each position of the context window on text from another distribution than the training
set (the paper: Simple English Wikipedia for models trained on BabiStories), and where the curves cross."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import numpy as np

from memory_mosaics.evaluate import window_loss
from memory_mosaics.experiments.figures import pyplot
from memory_mosaics.experiments.language.common import (
    PAPER,
    Checkpoint,
    EvalData,
    colour,
    md_table,
    same_tokenizer_note,
    smooth,
    write_outputs,
)

NAME = "ood"


def crossings(a: np.ndarray, b: np.ndarray) -> dict[str, Any]:
    """Where curve ``a`` (e.g. the Memory Mosaic's loss) goes below curve ``b`` (the GPT's).

    ``first_below``: the first position where a < b; ``below_from``: the first position after which a < b holds to the
    end of the window (None if a is not below b at the end); ``sign_changes``: every position where the sign of b − a
    changes.
    """
    d = np.asarray(b, dtype=np.float64) - np.asarray(a, dtype=np.float64)
    below = d > 0
    first = int(np.argmax(below)) if below.any() else None
    below_from = None
    if below[-1]:
        above = np.flatnonzero(~below)
        below_from = int(above[-1] + 1) if len(above) else 0
    sign = np.sign(d)
    changes = [int(i + 1) for i in np.flatnonzero(sign[1:] * sign[:-1] < 0)]
    return {"first_below": first, "below_from": below_from, "sign_changes": changes}


def ood(
    checkpoints: list[Checkpoint], data: EvalData, out: Path, context: int = 0, smoothing: int = 9
) -> dict[str, Any]:
    """Figure 8 into ``out``: each model's loss at each position of windows of ``context`` tokens (0: its training
    context) and where the first Memory Mosaic's curve, smoothed over ``smoothing`` positions, crosses the first GPT's.
    """
    results, source = [], ""
    for ck in checkpoints:
        tokens, source = data.tokens(ck)
        r = window_loss(ck.model, tokens, context or ck.block_size, data.batch_size, data.max_windows)
        results.append({**ck.describe(), "source": source, **r})
    fig, ax = pyplot().subplots(figsize=(7, 4.5))
    for ck, r in zip(checkpoints, results, strict=True):
        pp = np.asarray(r["per_position"])
        ax.plot(pp, color=colour(ck.kind), alpha=0.25, lw=0.7)
        ax.plot(smooth(pp, smoothing), color=colour(ck.kind), lw=1.6, label=f"{ck.label} (mean {r['loss']:.3f})")
    numbers: dict[str, Any] = {"figure": "8", "source": source, "smooth": smoothing, "models": results}
    cross_text = "Need one Memory Mosaic and one GPT to locate the crossing."
    pair = mosaic_and_gpt(checkpoints, results)
    if pair is not None:
        numbers["crossing"] = crossing(*pair, smoothing)
        if numbers["crossing"]["below_from"] is not None:
            ax.axvline(numbers["crossing"]["below_from"], color="k", ls=":", lw=1)
        cross_text = crossing_text(numbers["crossing"], smoothing)
    ax.set_xlabel("position in the window")
    ax.set_ylabel("mean loss")
    ax.set_title(f"Per-position loss on {source} (cf. Figure 8)", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    section = ood_section(results, source, cross_text, same_tokenizer_note(checkpoints))
    write_outputs(out, NAME, numbers, section, fig)
    return numbers


def mosaic_and_gpt(
    checkpoints: list[Checkpoint], results: list[dict[str, Any]]
) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """The results of the first Memory Mosaic and the first GPT, or None without one of each."""
    mosaic = next((r for c, r in zip(checkpoints, results, strict=True) if c.kind == "mosaic"), None)
    gpt = next((r for c, r in zip(checkpoints, results, strict=True) if c.kind.startswith("gpt")), None)
    return None if mosaic is None or gpt is None else (mosaic, gpt)


def crossing(mosaic: dict[str, Any], gpt: dict[str, Any], smoothing: int) -> dict[str, Any]:
    """``crossings`` of the two smoothed per-position curves (over the shorter window), with the two labels."""
    n = min(len(mosaic["per_position"]), len(gpt["per_position"]))
    cross = crossings(smooth(mosaic["per_position"][:n], smoothing), smooth(gpt["per_position"][:n], smoothing))
    cross["mosaic"], cross["gpt"] = mosaic["label"], gpt["label"]
    return cross


def crossing_text(cross: dict[str, Any], smoothing: int) -> str:
    where = (
        f"is below {cross['gpt']} from position {cross['below_from']} to the end of the window"
        if cross["below_from"] is not None
        else f"is not below {cross['gpt']} at the end of the window"
    )
    return (
        f"Smoothed over {smoothing} positions, {cross['mosaic']} {where} (first below at {cross['first_below']}; "
        f"sign changes at {cross['sign_changes'][:10]}). The paper: about 50 tokens, in 512-token windows."
    )


def ood_section(results: list[dict[str, Any]], source: str, cross_text: str, note: str) -> str:
    """The Markdown section: mean loss over early, short-range and long-range positions, and the crossing."""
    T = min(len(r["per_position"]) for r in results)
    cut = sorted({0, min(16, T), min(64, T), max(T // 2, min(64, T)), T})
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
        note,
    ]
    return "\n".join(section)
