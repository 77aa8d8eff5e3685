"""Windowed retrieval with an adaptive bandwidth, Memory Mosaics v2 (eqs. 6 and 10 of "Memory Mosaics at scale").

The query at position t sees the pairs i with t - window < i ≤ t - delay:
  * short-term memory: window h, delay 1 (pairs t-h+1 … t-1);
  * long-term memory: no window, delay m (pairs 0 … t-m);
  * the split-attention transformer of the v2 paper's Figure 5: delay 0 for its short-window heads (t-h+1 … t).
Its bandwidth grows with the number n_t of pairs it sees, β(n) = β1·n^α + β0 per head, and since n_t depends only on
t and the window, β(n_t) is folded into the query row (q_t·β(n_t), dot-product scale 1). A query that sees no pair
returns 0.

Three forms: ``windowed_retrieval_naive`` (an explicit softmax per query, tests only), ``windowed_retrieval``
(parallel: the long-term memory is v1's shifted-sequence causal SDPA; the short-term memory runs blocks of queries
against the keys their band reaches, so memory is O(T·(h + block)), never T×T) and ``windowed_retrieval_step`` (one
streamed query against the pairs of its window). Shapes: queries, keys and values (B, H, T, D); β0, β1, α (H,).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from memory_mosaics.ops.retrieval import retrieval, retrieval_step


def visible_pairs(T: int, delay: int, window: int | None = None, q_offset: int = 0, device=None) -> Tensor:
    """n_t, the number of pairs the query at absolute position q_offset + j sees, for j = 0 … T-1 (int64)."""
    t = torch.arange(q_offset, q_offset + T, device=device)
    n = (t - delay + 1).clamp_min(0)
    if window is not None:
        n = n.clamp_max(max(window - delay, 0))
    return n


def bandwidth(n: Tensor, beta0: Tensor, beta1: Tensor, alpha: Tensor) -> Tensor:
    """β(n) = β1·n^α + β0 for every head and count: n (T,) -> (H, T). A count of 0 (an empty memory, whose output is 0
    whatever β) is taken as 1, so that the gradient of n^α in α, n^α·log n, stays finite."""
    n = n.clamp_min(1).to(beta1.dtype).unsqueeze(0)
    return beta1.unsqueeze(-1) * n.pow(alpha.unsqueeze(-1)) + beta0.unsqueeze(-1)


def _check(delay: int, window: int | None) -> None:
    if delay < 0:
        raise ValueError(f"delay must be >= 0 (>= 1 for values that peek one step ahead), got {delay}")
    if window is not None and window <= delay:
        raise ValueError(f"window ({window}) must exceed delay ({delay}), or the memory is always empty")


def windowed_retrieval_naive(
    query: Tensor, keys: Tensor, values: Tensor, beta0: Tensor, beta1: Tensor, alpha: Tensor, delay: int,
    window: int | None = None,
) -> Tensor:  # fmt: skip
    """Reference: for every query, its visible pairs, β(n) and an explicit softmax."""
    _check(delay, window)
    B, H, T, _ = query.shape
    out = torch.zeros(B, H, T, values.shape[-1], dtype=values.dtype, device=values.device)
    for t in range(T):
        lo = 0 if window is None else max(0, t - window + 1)
        hi = t - delay + 1  # exclusive
        if hi <= lo:
            continue
        n = torch.tensor(float(hi - lo), dtype=beta1.dtype)
        beta = beta1 * n**alpha + beta0  # (H,)
        scores = torch.einsum("bhd,bhid->bhi", query[:, :, t], keys[:, :, lo:hi]) * beta.view(1, H, 1)
        out[:, :, t] = torch.einsum("bhi,bhid->bhd", scores.softmax(-1), values[:, :, lo:hi])
    return out


def _blocks(
    Tq: int, delay: int, window: int, first: int, block: int, q_offset: int, k_offset: int, device: torch.device
) -> list[tuple[int, int, int, int, Tensor]]:
    """The short-term band by blocks of queries: (j0, j1, i0, i1, mask) for local queries j0 … j1-1, local keys
    i0 … i1-1 and the (j1-j0, i1-i0) boolean mask of the pairs each query sees."""
    out = []
    for j0 in range(first, Tq, block):
        j1 = min(j0 + block, Tq)
        t0, t1 = q_offset + j0, q_offset + j1  # absolute positions of the block's queries
        k0, k1 = max(k_offset, t0 - window + 1), t1 - delay  # absolute range [k0, k1) of the keys its band reaches
        t = torch.arange(t0, t1, device=device).unsqueeze(-1)
        i = torch.arange(k0, k1, device=device).unsqueeze(0)
        out.append((j0, j1, k0 - k_offset, k1 - k_offset, (i > t - window) & (i <= t - delay)))
    return out


class _BandCPU(torch.autograd.Function):
    """The band on the CPU, with the flash kernel's forward and backward called block by block. Through autograd,
    each block's slices of q, k and v would each cost a zero-filled gradient of the whole sequence (at T = 2048,
    h = 256, a tenth of a v2 training step); here the gradients are written into one buffer per input."""

    @staticmethod
    def forward(ctx, q: Tensor, keys: Tensor, values: Tensor, blocks: list) -> Tensor:  # type: ignore[override]
        flash = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu
        outs, lses, masks = [], [], []
        for j0, j1, i0, i1, allowed in blocks:
            mask = torch.zeros(allowed.shape, dtype=q.dtype, device=q.device).masked_fill_(~allowed, float("-inf"))
            o, lse = flash(q[:, :, j0:j1], keys[:, :, i0:i1], values[:, :, i0:i1], attn_mask=mask, scale=1.0)
            outs.append(o)
            lses.append(lse)
            masks.append(mask)
        out = torch.cat(outs, dim=2)
        ctx.save_for_backward(q, keys, values, out, torch.cat(lses, dim=2))
        ctx.blocks, ctx.masks = blocks, masks
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        q, keys, values, out, lse = ctx.saved_tensors
        backward = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward
        dq, dk, dv = torch.zeros_like(q), torch.zeros_like(keys), torch.zeros_like(values)
        first = ctx.blocks[0][0]
        for (j0, j1, i0, i1, _), mask in zip(ctx.blocks, ctx.masks, strict=True):
            r0, r1 = j0 - first, j1 - first  # rows of out, grad and lse
            gq, gk, gv = backward(
                grad[:, :, r0:r1].contiguous(), q[:, :, j0:j1], keys[:, :, i0:i1], values[:, :, i0:i1],
                out[:, :, r0:r1], lse[:, :, r0:r1], 0.0, False, attn_mask=mask, scale=1.0,
            )  # fmt: skip
            dq[:, :, j0:j1] = gq
            dk[:, :, i0:i1] += gk
            dv[:, :, i0:i1] += gv
        return dq, dk, dv, None


def _band(
    q: Tensor, keys: Tensor, values: Tensor, delay: int, window: int, first: int, block: int, q_offset: int,
    k_offset: int,
) -> Tensor:  # fmt: skip
    """Short-term retrieval of local queries first … Tq-1 (already scaled by β), by blocks of ``block`` queries; query j
    sits at absolute position q_offset + j and key i at k_offset + i."""
    blocks = _blocks(q.shape[2], delay, window, first, block, q_offset, k_offset, q.device)
    if q.device.type == "cpu" and not torch.compiler.is_compiling():
        return _BandCPU.apply(q, keys, values, blocks)
    parts = [
        F.scaled_dot_product_attention(q[:, :, j0:j1], keys[:, :, i0:i1], values[:, :, i0:i1], attn_mask=m, scale=1.0)
        for j0, j1, i0, i1, m in blocks
    ]
    return torch.cat(parts, dim=2)


def windowed_retrieval(
    query: Tensor, keys: Tensor, values: Tensor, beta0: Tensor, beta1: Tensor, alpha: Tensor, delay: int,
    window: int | None = None, block: int = 128, q_offset: int = 0, k_offset: int = 0,
) -> Tensor:  # fmt: skip
    """Parallel retrieval of a chunk of queries against the pairs of their windows (training, and prefill of a
    streaming state). Query j sits at absolute position q_offset + j; the stored pairs start at absolute position
    k_offset (a short-term memory drops the pairs no future query can see) and must reach q_offset + Tq - 1 - delay."""
    _check(delay, window)
    B, H, T, _ = query.shape
    n = visible_pairs(T, delay, window, q_offset, device=query.device)
    q = query * bandwidth(n, beta0, beta1, alpha).to(query.dtype).view(1, H, T, 1)
    if window is None:
        if k_offset:
            raise ValueError("a long-term memory keeps every pair: k_offset must be 0")
        return retrieval(q, keys, values, lookahead=delay, scale=1.0, q_offset=q_offset)
    first = min(max(delay - q_offset, 0), T)  # the queries before it see no pair
    out = query.new_zeros(B, H, first, values.shape[-1])
    if first == T:
        return out
    return torch.cat([out, _band(q, keys, values, delay, window, first, block, q_offset, k_offset)], dim=2)


def windowed_retrieval_step(
    query: Tensor, keys: Tensor, values: Tensor, beta0: Tensor, beta1: Tensor, alpha: Tensor
) -> Tensor:
    """One streamed query per sequence (B, H, 1, D) against the pairs its window holds (B, H, n, D): what a streaming
    v2 memory runs per token; n = keys.shape[2] sets the bandwidth."""
    n = max(keys.shape[2], 1)  # as ``bandwidth``: an empty memory's count is taken as 1
    beta = torch.addcmul(beta0, beta1, torch.pow(float(n), alpha)).to(query.dtype).view(1, -1, 1, 1)  # 3 ops, not 9
    return retrieval_step(query * beta, keys, values, scale=1.0)
