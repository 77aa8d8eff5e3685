"""Length extrapolation (the paper's open question 2): per-position loss up to several times the training context.

The Memory Mosaic has no position encoding and reads the long window as is (streamed through its memory state with
``chunk``, never cropped); GPTs with RoPE or ALiBi positions are evaluated the same way; a GPT with learned positions
cannot read past its training length and is skipped.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from memory_mosaics.evaluate import window_loss
from memory_mosaics.experiments.language.common import (
    Checkpoint,
    EvalData,
    colour,
    md_table,
    panel_grid,
    same_tokenizer_note,
    smooth,
    write_outputs,
)

NAME = "extrapolate"


def extrapolate(
    checkpoints: list[Checkpoint],
    data: EvalData,
    out: Path,
    factors: Sequence[int] = (1, 3, 8),
    chunk: int = 0,
    smoothing: int = 33,
) -> dict[str, Any]:
    """Per-position loss on windows of each of ``factors`` times the training context into ``out``; ``chunk`` > 0
    streams each window through the memory state that many tokens at a time (see ``window_loss``)."""
    skipped = [c.label for c in checkpoints if c.model.max_context is not None]
    cks = [c for c in checkpoints if c.model.max_context is None]
    if not cks:
        raise ValueError(
            "no checkpoint can read past its training context (learned positions); give a Memory Mosaic "
            "or a GPT with rope/alibi/none positions"
        )
    factors = sorted(set(factors))
    results: list[dict[str, Any]] = []
    rows = []
    for ck in cks:
        tokens, source = data.tokens(ck)
        for f in factors:
            r = window_results(ck, tokens, source, f, data, chunk)
            results.append(r)
            if "skipped" not in r:
                first, last = r["segment_loss"][0], r["segment_loss"][-1]
                rows.append([ck.label, f, f * ck.block_size, r["windows"], r["loss"], first, last])
    if not rows:  # an empty table and figure would look like a result
        why = "; ".join(f"{r['label']} x{r['factor']}: {r['skipped']}" for r in results)
        raise ValueError(f"the text is too short for any window ({why})")
    fig = extrapolate_figure(results, factors, cks[0].block_size, smoothing)
    numbers = {"factors": factors, "chunk": chunk, "skipped": skipped, "models": results}
    write_outputs(out, NAME, numbers, extrapolate_section(rows, skipped, same_tokenizer_note(cks)), fig)
    return numbers


def window_results(
    ck: Checkpoint, tokens: np.ndarray, source: str, factor: int, data: EvalData, chunk: int
) -> dict[str, Any]:
    """The loss of ``ck`` on windows ``factor`` times its training context, and in each training-length slice of them
    (or why there is none: a text too short)."""
    T = ck.block_size
    if len(tokens) <= factor * T:
        return {**ck.describe(), "factor": factor, "skipped": f"{len(tokens)} tokens < {factor * T} + 1"}
    r = window_loss(ck.model, tokens, factor * T, data.batch_size, data.max_windows, chunk)
    pp = np.asarray(r["per_position"])
    segments = [float(pp[k * T : (k + 1) * T].mean()) for k in range(factor)]
    return {**ck.describe(), "source": source, "factor": factor, "segment_loss": segments, **r}


def extrapolate_figure(results: list[dict[str, Any]], factors: list[int], block_size: int, smoothing: int) -> Any:
    """One panel per factor: each model's smoothed per-position loss; dotted lines at multiples of the context."""
    fig, axes = panel_grid(len(factors), width=5.5)
    for ax, f in zip(axes, factors, strict=True):
        for r in (r for r in results if r["factor"] == f and "per_position" in r):
            ax.plot(smooth(r["per_position"], smoothing), color=colour(r["kind"]), lw=1.3, label=r["label"])
        for k in range(1, f):
            ax.axvline(k * block_size, color="k", ls=":", lw=0.8)
        ax.set_title(f"window = {f} x training context")
        ax.set_xlabel("position")
        ax.set_ylabel("mean loss")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle("Per-position loss beyond the training context (dotted: multiples of it)")
    return fig


def extrapolate_section(rows: list[list[Any]], skipped: list[str], note: str) -> str:
    section = [
        "## Length extrapolation (open question 2)",
        "",
        "Per-position loss on windows several times the training context. The Memory Mosaic (no positions) reads them "
        "without cropping; the GPTs use RoPE or ALiBi positions.",
        "",
        "![extrapolate](extrapolate.png)",
        "",
        md_table(
            ["model", "factor", "window", "windows", "mean loss", "loss, first context", "loss, last context"], rows
        ),
        "",
    ]
    if skipped:
        section.append(f"Skipped (learned positions cannot extend): {', '.join(skipped)}.")
    section.append(note)
    return "\n".join(section)
