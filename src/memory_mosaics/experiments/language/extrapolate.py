"""Length extrapolation (the paper's open question 2): per-position loss up to several times the training context.

The Memory Mosaic has no position encoding and reads the long window as is (streamed through its memory state with
``--chunk``, never cropped); GPTs with RoPE or ALiBi positions are evaluated the same way; a GPT with learned positions
cannot read past its training length and is skipped.
"""

from __future__ import annotations

import argparse
from typing import Any

import numpy as np

from memory_mosaics.cli.types import natural, positive
from memory_mosaics.experiments.language.common import (
    add_checkpoint_arguments,
    add_data_arguments,
    colour,
    eval_tokens,
    load_checkpoints,
    md_table,
    panel_grid,
    same_tokenizer_note,
    smooth,
    write_outputs,
)
from memory_mosaics.experiments.language.positions import per_position_loss

NAME = "extrapolate"


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_checkpoint_arguments(
        p, "checkpoints or run folders (Memory Mosaic, GPT-RoPE, GPT-ALiBi), optionally LABEL=PATH"
    )
    add_data_arguments(p)
    p.add_argument(
        "--factors", type=positive, nargs="+", default=[1, 3, 8], help="window lengths, in training contexts"
    )
    p.add_argument(
        "--chunk",
        type=natural,
        default=0,
        help="stream windows through the memory state this many tokens at a time "
        "(0 = one forward per window; set it, e.g. to the training context, for long windows on a CPU)",
    )
    p.add_argument("--smooth", type=positive, default=33, help="moving average (positions) for the plot")


def run(args: argparse.Namespace) -> dict[str, Any]:
    cks = load_checkpoints(args.checkpoints, args.device)
    skipped = [c.label for c in cks if c.model.max_context is not None]
    cks = [c for c in cks if c.model.max_context is None]
    if not cks:
        raise ValueError(
            "no checkpoint can read past its training context (learned positions); give a Memory Mosaic "
            "or a GPT with rope/alibi/none positions"
        )
    factors = sorted(set(args.factors))
    fig, axes = panel_grid(len(factors), width=5.5)
    results: list[dict[str, Any]] = []
    rows = []
    for ck in cks:
        tokens, source = eval_tokens(ck, args)
        T = ck.block_size
        for f in factors:
            if len(tokens) <= f * T:
                results.append({**ck.describe(), "factor": f, "skipped": f"{len(tokens)} tokens < {f * T} + 1"})
                continue
            r = per_position_loss(ck.model, tokens, f * T, args.batch_size, args.max_windows, args.chunk)
            pp = np.asarray(r["per_position"])
            segments = [float(pp[k * T : (k + 1) * T].mean()) for k in range(f)]  # loss in each training-length slice
            results.append({**ck.describe(), "source": source, "factor": f, "segment_loss": segments, **r})
            rows.append([ck.label, f, f * T, r["windows"], r["loss"], segments[0], segments[-1]])
    if not rows:  # an empty table and figure would look like a result
        why = "; ".join(f"{r['label']} x{r['factor']}: {r['skipped']}" for r in results)
        raise ValueError(f"the text is too short for any window ({why})")
    for ax, f in zip(axes, factors, strict=True):
        for r in (r for r in results if r["factor"] == f and "per_position" in r):
            ax.plot(smooth(r["per_position"], args.smooth), color=colour(r["kind"]), lw=1.3, label=r["label"])
        for k in range(1, f):
            ax.axvline(k * cks[0].block_size, color="k", ls=":", lw=0.8)
        ax.set_title(f"window = {f} x training context")
        ax.set_xlabel("position")
        ax.set_ylabel("mean loss")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle("Per-position loss beyond the training context (dotted: multiples of it)")
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
    section.append(same_tokenizer_note(cks))
    numbers = {"factors": factors, "chunk": args.chunk, "skipped": skipped, "models": results}
    write_outputs(args.out, NAME, numbers, "\n".join(section), fig)
    return numbers
