"""Figures 14, 15 and 16: how the last position of a window attends to earlier positions.

- Figure 14: at the training length, per head and averaged, for each model (paper: one-block Memory Mosaic and GPT).
- Figure 15: on windows ``extend`` (3) times the training length, for the models without learned positions
  (Memory Mosaic, GPT with RoPE or ALiBi).
- Figure 16: for Memory Mosaics, the leaky-average rate λ_φ = exp(-β_h) of each head against the width of the peak of
  its attention on the most recent tokens.

SDPA does not return attention weights, so they are recomputed from each layer's own features: forward hooks on the
blocks' ``ln_1`` capture the layer inputs, then the scores of the last query are formed exactly as the layer forms them.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from memory_mosaics.data.shards import windows
from memory_mosaics.evaluate import eval_starts
from memory_mosaics.experiments.figures import pyplot, save_figure
from memory_mosaics.experiments.language.common import Checkpoint, EvalData, md_table, panel_grid, write_outputs
from memory_mosaics.layers.block import MosaicBlock
from memory_mosaics.layers.contextual import ContextualMemory
from memory_mosaics.layers.features import split_heads
from memory_mosaics.models import LanguageModel
from memory_mosaics.models.gpt import CausalSelfAttention, rope

NAME = "attention"


def mixing_layer(block: nn.Module) -> nn.Module:
    """The layer of a block that mixes positions: a Memory Mosaic's contextual memory, a GPT's attention."""
    return block.contextual if isinstance(block, MosaicBlock) else block.attn


def last_query_weights(layer: torch.nn.Module, x: Tensor) -> Tensor:
    """Attention weights (B, H, T) of the last position over positions 0..T-1, for a layer input x (B, T, d)."""
    T = x.shape[1]
    if isinstance(layer, ContextualMemory):  # queries are the keys; pairs i > t - lookahead are not yet stored
        k, _ = layer.key(x)
        scores = torch.einsum("bhd,bhid->bhi", k[:, :, -1], k).float()  # retrieval scale 1: bandwidth is in ‖k‖
        scores[..., T - layer.lookahead :] = float("-inf")
    elif isinstance(layer, CausalSelfAttention):
        q, k, _ = (split_heads(t, layer.n_head) for t in layer.c_attn(x).split(x.shape[-1], dim=2))
        if layer.pos == "rope":
            q, k = rope(q, 0, layer.rope_base), rope(k, 0, layer.rope_base)
        scores = torch.einsum("bhd,bhid->bhi", q[:, :, -1], k).float() / math.sqrt(q.shape[-1])
        if layer.pos == "alibi":
            dist = torch.arange(T - 1, -1, -1, device=x.device, dtype=torch.float32)  # (T - 1) - i
            scores = scores - layer.slopes.float().view(1, -1, 1) * dist
    else:
        raise TypeError(f"no attention weights for a {type(layer).__name__}")
    return scores.softmax(-1)


@torch.no_grad()
def mean_attention(
    model: LanguageModel, tokens: np.ndarray, context: int, batch_size: int, max_windows: int
) -> tuple[np.ndarray, int]:
    """Attention of the last position, averaged over windows: (n_layer, H, context), and the number of windows."""
    device = next(model.parameters()).device
    inputs: dict[int, Tensor] = {}
    hooks = [
        block.ln_1.register_forward_hook(lambda _m, _i, out, n=n: inputs.__setitem__(n, out))
        for n, block in enumerate(model.blocks)
    ]
    total: np.ndarray | None = None
    starts = eval_starts(len(tokens), context, max_windows)
    try:
        for i in range(0, len(starts), batch_size):
            x, _ = windows(tokens, starts[i : i + batch_size], context)
            model(x.to(device))
            w = torch.stack([last_query_weights(mixing_layer(b), inputs[n]).sum(0) for n, b in enumerate(model.blocks)])
            total = w.double().cpu().numpy() if total is None else total + w.double().cpu().numpy()
    finally:
        for h in hooks:
            h.remove()
    assert total is not None
    return total / len(starts), len(starts)


def peak_width(w: np.ndarray) -> int:
    """Width of the attention peak on the most recent tokens: the run of positions, counted back from the last one
    that gets any weight, whose weight stays above half-way between the median weight and the maximum of that run."""
    w = w[: int(np.flatnonzero(w > 0)[-1]) + 1] if (w > 0).any() else w
    base, top = float(np.median(w)), float(w.max())
    thr = base + 0.5 * (top - base)
    n = 0
    for v in w[::-1]:
        if v < thr:
            break
        n += 1
    return n


def peak_extent(w: np.ndarray, k: float = 3.0) -> int:
    """How far back the recent-token peak reaches: the run of positions, counted back from the last stored one, whose
    weight stays above the noise floor median + k·MAD of the window (a flat head scores 0 or 1)."""
    w = w[: int(np.flatnonzero(w > 0)[-1]) + 1] if (w > 0).any() else w
    med = float(np.median(w))
    floor = med + k * float(np.median(np.abs(w - med)))
    n = 0
    for v in w[::-1]:
        if v <= floor:
            break
        n += 1
    return n


def _plot_maps(ax: Any, att: np.ndarray, title: str) -> None:
    """Per-head curves (solid) and their mean (dotted), one block."""
    att = np.concatenate([att, att.mean(0, keepdims=True)])
    for curve in att:  # positions a Memory Mosaic has not stored yet (look-ahead) are not drawn as zero weights
        stored = np.flatnonzero(curve > 0)
        if len(stored):
            curve[stored[-1] + 1 :] = np.nan
    for h, curve in enumerate(att[:-1]):
        ax.plot(curve, lw=0.8, alpha=0.7, label=f"head {h}" if len(att) <= 13 else None)
    ax.plot(att[-1], "k:", lw=2, label="mean")
    ax.set_title(title, fontsize=9)
    ax.set_xlabel("attended position")
    ax.set_ylabel("attention of the last position")
    ax.grid(alpha=0.3)


def _figure(entries: list[dict[str, Any]], block: int, title: str) -> Any:
    fig, axes = panel_grid(len(entries))
    for ax, e in zip(axes, entries, strict=True):
        att = np.asarray(e["attention"])
        b = min(block, len(att) - 1)
        _plot_maps(ax, att[b], f"{e['label']}, block {b}, window {e['context']}")
        if e["context"] > e["block_size"]:  # left of this line: farther back than any distance seen in training
            ax.axvline(e["context"] - e["block_size"], color="gray", ls="--", lw=0.8)
    axes[0].legend(fontsize=6, ncol=2)
    fig.suptitle(title)
    return fig


def _lambda_rows(ck: Checkpoint, att: np.ndarray) -> list[dict[str, Any]]:
    rows = []
    for n, block in enumerate(ck.model.blocks):
        lam = torch.exp(-mixing_layer(block).key.decay_rate.detach().float()).cpu().numpy()
        for h, lam_h in enumerate(lam):
            w = att[n, h]
            rows.append(
                {
                    "block": n,
                    "head": h,
                    "lambda": float(lam_h),
                    "peak_width": peak_width(w),
                    "peak_extent": peak_extent(w),
                    "recent_mass_8": float(w[-9:-1].sum() if len(w) > 8 else w.sum()),
                }
            )
    return rows


def attention(
    checkpoints: list[Checkpoint], data: EvalData, out: Path, extend: int = 3, block: int = 0, recent: int = 64
) -> dict[str, Any]:
    """Figures 14-16 into ``out``: attention of the last position at the training length, on windows ``extend`` times
    longer (0 or 1 = skip) and, for Memory Mosaics, λ_φ against the peak on the ``recent`` last positions. Every
    block is measured; ``block`` is the one plotted."""
    unsupported = [f"{ck.path} ({ck.kind})" for ck in checkpoints if ck.kind in ("mosaic2", "llama")]
    if unsupported:  # their blocks mix positions through two memories, or a split attention: not drawn yet
        raise ValueError("the attention figures read v1 Memory Mosaics and GPTs; not " + ", ".join(unsupported))
    fig14, fig15, lambdas = [], [], []
    for ck in checkpoints:
        tokens, source = data.tokens(ck)
        T = ck.block_size
        fig14.append(attention_entry(ck, tokens, source, T, data))
        if ck.kind == "mosaic":
            lambdas.append({**ck.describe(), "heads": _lambda_rows(ck, fig14[-1]["attention"])})
        if extend > 1 and ck.model.max_context is None and len(tokens) > extend * T:
            fig15.append(attention_entry(ck, tokens, source, extend * T, data))
    out_figs = {"attention_train": (fig14, "Attention of the last position, training length (cf. Figure 14)")}
    if fig15:
        out_figs["attention_extended"] = (fig15, f"Windows of {extend}x the training length (cf. Figure 15)")
    section = ["## Attention of the last position (Figures 14, 15, 16)", ""]
    for name, (entries, title) in out_figs.items():
        save_figure(_figure(entries, block, title), Path(out) / f"{name}.png", bbox_inches="tight")
        section += [f"![{name}]({name}.png)", ""]
    section += attention_summary(fig14 + fig15, block)
    if lambdas:
        fig = _lambda_figure(lambdas, fig14, block, recent)
        save_figure(fig, Path(out) / "attention_lambda.png", bbox_inches="tight")
        section += lambda_section(lambdas)
    numbers = {
        "figure": "14, 15, 16",
        "block_plotted": block,
        "train_length": fig14,
        "extended": fig15,
        "lambda": lambdas,
    }
    write_outputs(out, NAME, numbers, "\n".join(section))
    return numbers


def attention_entry(ck: Checkpoint, tokens: np.ndarray, source: str, context: int, data: EvalData) -> dict[str, Any]:
    """The model, its mean attention of the last position on windows of ``context`` tokens, and how many windows."""
    att, n = mean_attention(ck.model, tokens, context, data.batch_size, data.max_windows)
    return {**ck.describe(), "source": source, "context": context, "windows": n, "attention": att}


def attention_summary(entries: list[dict[str, Any]], block: int) -> list[str]:
    """Markdown lines: where the mean head of the plotted block puts its weight, and what the paper saw."""
    rows = []
    for e in entries:
        att = np.asarray(e["attention"])[min(block, len(e["attention"]) - 1)].mean(0)
        T = len(att)
        rows.append(
            [e["label"], e["context"], e["windows"], float(att[0]), float(att[-8:].sum()), float(att[: T // 2].sum())]
        )
    return [
        md_table(["model", "window", "windows", "weight on position 0", "mass on last 8", "mass on first half"], rows),
        "",
        "Paper (one block, 512 tokens): the GPT is noisy with an attention sink at position 0; the Memory Mosaic is "
        "flat save for the most recent tokens, and stays flat on 3x longer windows, where RoPE degrades and ALiBi "
        "fades out distant tokens.",
        "",
    ]


def lambda_section(lambdas: list[dict[str, Any]]) -> list[str]:
    """Markdown lines of Figure 16: each Memory Mosaic head's λ_φ and the measures of its recent-token peak."""
    return [
        "### Leaky-average rate and attention width (Figure 16)",
        "",
        "![attention_lambda](attention_lambda.png)",
        "",
        md_table(
            ["model", "block", "head", "λ_φ", "peak width", "peak extent", "mass on 8 previous"],
            [
                [m["label"], h["block"], h["head"], h["lambda"], h["peak_width"], h["peak_extent"], h["recent_mass_8"]]
                for m in lambdas
                for h in m["heads"]
            ],
        ),
        "",
        "Peak width: positions, counted back from the last stored one, above half-way between the median and the "
        "peak; peak extent: the same run above median + 3 MAD of the window (the noise floor). Paper: the larger "
        "λ_φ, the longer the history a key summarises, and the wider the peak.",
    ]


def _lambda_figure(lambdas: list[dict[str, Any]], fig14: list[dict[str, Any]], block: int, recent: int) -> Any:
    """Left: each head's attention on the most recent positions, coloured by λ; right: λ against peak width."""
    plt = pyplot()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    cmap = plt.get_cmap("viridis")
    first = next(e for e in fig14 if e["kind"] == "mosaic")
    att = np.asarray(first["attention"])
    b = min(block, len(att) - 1)
    heads = [h for h in lambdas[0]["heads"] if h["block"] == b]
    r = min(recent, att.shape[-1])
    x = np.arange(att.shape[-1] - r, att.shape[-1])
    for h in heads:
        curve = att[b, h["head"], -r:].copy()
        curve[x > np.flatnonzero(att[b, h["head"]] > 0)[-1]] = np.nan  # not yet stored (look-ahead)
        ax1.plot(x, curve, color=cmap(h["lambda"] / 0.7), lw=1.2, label=f"λ={h['lambda']:.3f}")
    ax1.set_title(f"{first['label']}, block {b}: last {r} positions", fontsize=9)
    ax1.set_xlabel("attended position")
    ax1.set_ylabel("attention of the last position")
    ax1.legend(fontsize=6)
    ax1.grid(alpha=0.3)
    for m in lambdas:
        lam = [h["lambda"] for h in m["heads"]]
        width = [h["peak_extent"] for h in m["heads"]]
        ax2.scatter(lam, width, label=m["label"], s=20)
    ax2.set_xlabel("leaky-average rate λ_φ")
    ax2.set_ylabel("peak extent (positions above median + 3 MAD)")
    ax2.set_title("λ_φ against the width of the recent-token peak (cf. Figure 16)", fontsize=9)
    ax2.grid(alpha=0.3)
    ax2.legend(fontsize=7)
    return fig
