"""Associative retrieval by kernel smoothing, eqs. (3) and (7).

y_t = Σ_{i ≤ t-s} softmax_i(scale · q_t·k_i) v_i over the stored pairs, with look-ahead s:
  * s ≥ 1 for a contextual memory whose values peek s steps ahead (s = 1 in the paper: the diagonal is excluded, because
    v_t contains x_{t+1}); y_t = 0 while the memory is empty (t < s);
  * s = 0 is ordinary causal attention (the GPT baseline);
  * s = None attends to every stored pair (a persistent memory's fixed bank).

With unit-norm keys, kernel smoothing with the Gaussian kernel exp(-β/2‖q - k_i‖²) equals this softmax with scale β;
``gaussian_retrieval_naive`` states eq. (2) literally and the tests check the equivalence.

Three forms: ``retrieval_naive`` (loops, tests only), ``retrieval`` (parallel, for training and prefill; strict
causality is ordinary causality on shifted sequences, so it runs on ``scaled_dot_product_attention``) and
``retrieval_step`` (a streamed token's query against the pairs it may see: what the streaming layers run per token).
``bank_retrieval`` is s = None against one bank shared by every sequence (a persistent memory), with a CPU kernel.
Shapes: queries (B, H, Tq, D), keys and values (B, H, Tk, D). Query j sits at absolute position ``q_offset + j`` and
key i at absolute position i.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.autograd.function import once_differentiable

from memory_mosaics.ops import kernels


def retrieval_naive(
    query: Tensor,
    keys: Tensor,
    values: Tensor,
    lookahead: int | None = 1,
    scale: float = 1.0,
    q_offset: int = 0,
    bias: Tensor | None = None,
) -> Tensor:
    """Reference: for every query, an explicit softmax over the pairs it may see."""
    out = torch.zeros(*query.shape[:-1], values.shape[-1], dtype=values.dtype, device=values.device)
    for j in range(query.shape[2]):
        n = keys.shape[2] if lookahead is None else q_offset + j - lookahead + 1  # visible pairs: i < n
        if n <= 0:
            continue
        scores = scale * torch.einsum("bhd,bhid->bhi", query[:, :, j], keys[:, :, :n])
        if bias is not None:
            scores = scores + bias[..., j, :n]
        out[:, :, j] = torch.einsum("bhi,bhid->bhd", scores.softmax(-1), values[:, :, :n])
    return out


def gaussian_retrieval_naive(query: Tensor, keys: Tensor, values: Tensor, beta: float, lookahead: int = 1) -> Tensor:
    """Eq. (2) as written: Nadaraya–Watson smoothing with the Gaussian kernel exp(-β/2 ‖q_t - k_i‖²), i ≤ t - s."""
    T = query.shape[2]
    out = torch.zeros_like(values[:, :, :T])
    for t in range(lookahead, T):
        d2 = ((query[:, :, t, None] - keys[:, :, : t - lookahead + 1]) ** 2).sum(-1)
        w = torch.exp(-beta / 2 * (d2 - d2.min(-1, keepdim=True).values))  # shift for stability; cancels in 1/Z
        out[:, :, t] = (w / w.sum(-1, keepdim=True)).unsqueeze(-1).mul(values[:, :, : t - lookahead + 1]).sum(-2)
    return out


def retrieval_step(
    query: Tensor,
    keys: Tensor,
    values: Tensor,
    scale: float = 1.0,
    dropout_p: float = 0.0,
    bias: Tensor | None = None,
) -> Tensor:
    """One query per sequence, (B, H, 1, D), against every pair given (the caller leaves out those the look-ahead
    hides); zero when there is none. ``bias`` (B, H, 1, Tk) or broadcastable, as in ``retrieval``."""
    if keys.shape[2] == 0:
        return torch.zeros(*query.shape[:-1], values.shape[-1], dtype=values.dtype, device=values.device)
    return F.scaled_dot_product_attention(query, keys, values, attn_mask=bias, dropout_p=dropout_p, scale=scale)


def _concat_time(parts: list[Tensor]) -> Tensor:
    """(B, H, t_i, D) pieces joined along time into one buffer laid out (B, T, H, D), like SDPA's own output and the
    keys: merging the heads then copies nothing, and the key path's backward scan can run in place."""
    return torch.cat([p.transpose(1, 2) for p in parts], dim=1).transpose(1, 2)


class _SelfRetrieval(torch.autograd.Function):
    """Training form of a contextual memory's retrieval, where the queries are the keys (q_offset 0, no bias).

    The forward pass is ``SDPA(k[s:], k[:-s], v[:-s], is_causal=True)`` written after s zero rows. Left to autograd,
    the two slices of k and the slice of v would each get a zero-filled full-length gradient, then be summed; this
    backward pass writes each full-length gradient once. The inner graph is held through saved tensors (the output
    keeps it alive), so autograd frees it after the backward pass, or keeps it under ``retain_graph``, as for any node.
    """

    @staticmethod
    def forward(ctx, keys: Tensor, values: Tensor, lookahead: int, scale: float, dropout_p: float) -> Tensor:
        B, H, T, D = keys.shape
        s, n = lookahead, T - lookahead
        k, v = keys.detach(), values.detach()
        parts = (k[:, :, s:].requires_grad_(), k[:, :, :n].requires_grad_(), v[:, :, :n].requires_grad_())
        with torch.enable_grad():
            y = F.scaled_dot_product_attention(*parts, dropout_p=dropout_p, is_causal=True, scale=scale)
        ctx.save_for_backward(y, *parts)
        ctx.lookahead = s
        return _concat_time([y.new_zeros(B, H, s, D), y.detach()])

    @staticmethod
    @once_differentiable
    def backward(ctx, g: Tensor):
        (y, *parts), s = ctx.saved_tensors, ctx.lookahead
        # retained here, the inner graph is freed with this node's saved tensors (unless the outer graph is retained)
        g_q, g_k, g_v = torch.autograd.grad(y, parts, g[:, :, s:], retain_graph=True)
        zeros = g_k.new_zeros(*g_k.shape[:2], s, g_k.shape[3])  # the last s pairs are never read
        g_keys = _concat_time([g_k, zeros])  # k_i as a stored key ...
        g_keys[:, :, s:] += g_q  # ... and k_t as the query at t
        return g_keys, _concat_time([g_v, zeros.to(g_v.dtype)]), None, None, None


def retrieval(
    query: Tensor,
    keys: Tensor,
    values: Tensor,
    lookahead: int | None = 1,
    scale: float = 1.0,
    q_offset: int = 0,
    dropout_p: float = 0.0,
    bias: Tensor | None = None,
) -> Tensor:
    """Parallel retrieval for a chunk of queries, used in training and prefill (``retrieval_step`` streams one token).

    Query j may see keys i ≤ q_offset + j - s. Queries with an empty memory (the first s - q_offset) output zero; the
    others form a causal pattern aligned to the bottom-right corner: with q_offset = 0 it is
    ``SDPA(q[s:], k[:-s], v[:-s], is_causal=True)``, the shift trick. ``bias`` (additive, broadcastable to
    (B, H, Tq, Tk)) serves ALiBi.
    """
    if lookahead is None:
        return F.scaled_dot_product_attention(query, keys, values, attn_mask=bias, dropout_p=dropout_p, scale=scale)
    if lookahead < 0:
        raise ValueError(f"lookahead must be >= 0 (or None for no mask), got {lookahead}")
    if (
        query is keys
        and q_offset == 0
        and bias is None
        and 1 <= lookahead < query.shape[2]
        and torch.is_grad_enabled()
        and (keys.requires_grad or values.requires_grad)
    ):
        return _SelfRetrieval.apply(keys, values, lookahead, scale, dropout_p)
    Tq = query.shape[2]
    first = max(0, lookahead - q_offset)  # first query with a non-empty memory
    n_keys = q_offset + Tq - lookahead  # pairs visible to the last query
    if first >= Tq:
        return query.new_zeros(*query.shape[:-1], values.shape[-1])
    if keys.shape[2] < n_keys or values.shape[2] < n_keys:
        raise ValueError(
            f"the memory holds {keys.shape[2]} keys and {values.shape[2]} values, but the query at position "
            f"{q_offset + Tq - 1} with look-ahead {lookahead} needs {n_keys}"
        )
    q, k, v = query[:, :, first:], keys[:, :, :n_keys], values[:, :, :n_keys]
    nq = Tq - first
    mask, is_causal = None, False
    if bias is not None:
        bias = bias[..., first:, :n_keys]
    if nq > 1:
        if nq == n_keys and bias is None:
            is_causal = True  # top-left and bottom-right alignment coincide
        else:
            visible = torch.ones(nq, n_keys, dtype=torch.bool, device=query.device).tril(n_keys - nq)
            mask = visible if bias is None else bias.masked_fill(~visible, float("-inf"))
    elif bias is not None:
        mask = bias
    y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p, is_causal=is_causal, scale=scale)
    if not first:
        return y
    B, H, _, D = y.shape
    return _concat_time([y.new_zeros(B, H, first, D), y])  # zeros for the queries with an empty memory


BANK_KERNEL_MIN_QUERIES = 64  # the kernel's tile


class _BankRetrievalCPU(torch.autograd.Function):
    """``bank_retrieval`` on the CPU kernel (``ops/csrc/bank_cpu.cpp``). Queries, output and gradients cross as
    (N, H, D) rows, the time-major layout of the keys. The backward pass recomputes the scores from the saved
    log-normalisers, and reuses the output, which the next projection keeps anyway."""

    @staticmethod
    def forward(ctx, q: Tensor, P_k: Tensor, P_v: Tensor) -> Tensor:
        y, lse = kernels.bank_forward(q, P_k, P_v)
        ctx.save_for_backward(q, P_k, P_v, y, lse)
        return y

    @staticmethod
    @once_differentiable
    def backward(ctx, g: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        return kernels.bank_backward(g, *ctx.saved_tensors)


def bank_retrieval(query: Tensor, P_k: Tensor, P_v: Tensor) -> Tensor:
    """Retrieval with s = None from one bank of pairs (H, m, D) that serves every sequence: softmax(q · P_kᵀ) P_v for
    queries (B, H, T, D), output laid out (B, T, H, D) in memory. The persistent memory's retrieval."""
    B, H, T, D = query.shape
    # below one tile of queries (streaming: one per sequence) the kernel's per-call cost outweighs what it saves
    if B * T >= BANK_KERNEL_MIN_QUERIES and kernels.applies(query, P_k, P_v) and kernels.has_bank():
        y = _BankRetrievalCPU.apply(query.transpose(1, 2).reshape(B * T, H, D), P_k, P_v)
        return y.view(B, T, H, D).transpose(1, 2)
    # The batch folds into the query length (a view, for time-major queries): the backward pass then accumulates the
    # bank's gradients once, not per sequence.
    q = query.transpose(1, 2).reshape(1, B * T, H, D).transpose(1, 2)
    y = retrieval(q, P_k.unsqueeze(0), P_v.unsqueeze(0), lookahead=None)
    return y.transpose(1, 2).reshape(B, T, H, D).transpose(1, 2)
