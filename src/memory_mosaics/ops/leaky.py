"""Leaky average of eq. (6): k̄_t = k̃_t + λ k̄_{t-1}, one decay λ_h = exp(-β_h) per head.

Three forms, as in flash-linear-attention:
  * ``leaky_average_naive``: an explicit loop over time, independent of the other two (tests only);
  * ``leaky_average``: the chunked parallel form for training, O(T) work and memory;
  * ``leaky_average_step``: the O(1) update for streaming, with the decay λ_h precomputed (``step_decay``).

The key path of eq. (6), leaky average then scaled normalisation, comes in the same three forms:
``scaled_leaky_keys_naive`` (a loop over time), ``scaled_leaky_keys`` (one autograd node; for fp32 CPU tensors, on the
fused kernels of ``ops/kernels.py``) and ``scaled_leaky_keys_step`` (what a streaming key extractor runs per token).

Shapes: ``x`` is (B, H, T, D); ``beta`` is (H,) with β_h ≥ 0; a state is k̄ at the last position, (B, H, D).

Precision: half-precision inputs (bf16, fp16) accumulate in fp32, decays included. The outputs come back in the input's
dtype (one rounding, as from a matmul with fp32 accumulation); states stay in fp32, so streaming loses nothing either.
Rounding every step of the recurrence to bf16 instead was 6-8x less accurate (1.5-2.3 % against 0.27 %, T = 512).
"""

from __future__ import annotations

import torch
from torch import Tensor

from memory_mosaics.ops import kernels
from memory_mosaics.ops.norm import NORM_EPS, head_scale, head_sum, scaled_norm, scaled_norm_backward

MAX_CARRY_MATRIX = 64  # chunks whose boundary states one (N × N) matmul carries; more chunks recurse


def accumulation_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype the recurrence runs in: at least fp32."""
    return torch.promote_types(dtype, torch.float32)


def default_chunk(T: int) -> int:
    """Chunk length of the parallel scan: C sequential steps plus a (T/C)² carry matmul; on CPU 16 was fastest at
    T = 512 and 32 at T = 2048 (forward scan of (8, 8, T, 32), 2 threads)."""
    return 16 if T <= 1024 else 32


def leaky_average_naive(x: Tensor, beta: Tensor, state: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Reference: the recurrence itself, one time step at a time."""
    decay = torch.exp(-beta).view(1, -1, 1)
    h = torch.zeros_like(x[:, :, 0]) if state is None else state
    out = []
    for t in range(x.shape[2]):
        h = decay * h + x[:, :, t]
        out.append(h)
    return torch.stack(out, dim=2), h


def step_decay(beta: Tensor, dtype: torch.dtype) -> Tensor:
    """The step form's per-head decay λ_h = exp(-β_h) for inputs of ``dtype`` (kept in the accumulation dtype), shaped
    (1, H, 1) to broadcast over a state (B, H, D)."""
    return torch.exp(-beta).view(1, -1, 1).to(accumulation_dtype(dtype))


def key_constants(beta: Tensor, log_scale: Tensor, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    """The key path's step-form constants for inputs of ``dtype``, both in the accumulation dtype: the decay λ_h and the
    key scale exp(log_scale_h), shaped (1, H, 1, 1). A streaming layer keeps them instead of deriving them from the
    parameters for every token."""
    return step_decay(beta, dtype), head_scale(log_scale, accumulation_dtype(dtype))


def leaky_average_step(x: Tensor, decay: Tensor, state: Tensor | None = None) -> Tensor:
    """One streaming step: ``x`` is (B, H, D), ``decay`` λ_h is (1, H, 1); returns the new state k̄_t (which is also
    the output), in the accumulation dtype."""
    x = x.to(accumulation_dtype(x.dtype))
    if state is None:
        return x
    return torch.addcmul(x, decay, state)


def _decay_matrix(beta: Tensor, n: int, stride: int, dtype: torch.dtype) -> Tensor:
    """(H, n, n) lower-triangular matrix exp(-β·stride·(t - i)) for i ≤ t, zero above the diagonal."""
    idx = torch.arange(n, device=beta.device)
    gap = (idx[:, None] - idx[None, :]).to(beta.dtype)
    causal = gap >= 0
    m = torch.exp(-beta.view(-1, 1, 1) * stride * gap.clamp(min=0))
    return (m * causal).to(dtype)


def _time_major(x: Tensor) -> bool:
    """Whether x (B, H, T, D) is a (B, T, H, D) buffer seen through a transpose, as split heads are."""
    return x.transpose(1, 2).is_contiguous()


@torch.no_grad()
def _scan(
    x: Tensor,
    beta: Tensor,
    state: Tensor | None = None,
    chunk_size: int | None = None,
    reverse: bool = False,
    inplace: bool = False,
) -> Tensor:
    """The recurrence k̄_t = x_t + λ k̄_{t-1} for all t (``reverse``: k̄_t = x_t + λ k̄_{t+1}, without state), O(T).

    The sequence is cut into N chunks of C steps. All chunks run the recurrence side by side, C vectorised steps from a
    zero state; the true state entering each chunk then follows the same recurrence across chunks with decay λ^C (one
    small (N × N) matmul, or this scan again for many chunks), and reaches step t of a chunk after t + 1 decays. The
    output is laid out (B, T, H, D) in memory, like a linear layer's output, so merging the heads again costs no copy.
    ``inplace`` overwrites x when its layout allows (x time-major, T a multiple of C): a fresh full-size tensor costs
    page faults on a CPU. The result is in the accumulation dtype.
    """
    B, H, T, D = x.shape
    C = min(chunk_size or default_chunk(T), T)
    N = -(-T // C)
    acc = accumulation_dtype(x.dtype)
    beta = beta.to(accumulation_dtype(beta.dtype))
    if state is not None:
        state = state.to(acc)
    if inplace and x.dtype == acc and N * C == T and _time_major(x):
        out = x.transpose(1, 2).view(B, N, C, H, D).permute(0, 3, 1, 2, 4)
    else:
        out = x.new_empty(B, N, C, H, D, dtype=acc).permute(0, 3, 1, 2, 4)  # (B, H, N, C, D) view of (B, T, H, D)
        flat = out.reshape(B, H, N * C, D)
        flat[:, :, :T] = x
        if N * C > T:  # zeros appended at the end change no output of either direction before T
            flat[:, :, T:] = 0
    lam = torch.exp(-beta).view(1, H, 1, 1).to(acc)
    steps = range(C - 2, -1, -1) if reverse else range(1, C)
    for t in steps:
        src = t + 1 if reverse else t - 1
        out[:, :, :, t].addcmul_(lam, out[:, :, :, src])
    ends = out[:, :, :, 0 if reverse else -1]  # each chunk's own contribution at its boundary, (B, H, N, D)
    if N > 1 or state is not None:
        # the state at chunk boundaries follows the same recurrence with decay λ^C: a small (N × N) matrix for few
        # chunks, the scan itself beyond (so a long prefill never builds an O(T²) matrix)
        if N <= MAX_CARRY_MATRIX:
            carry = _decay_matrix(beta, N, C, acc)  # state after chunk n from chunks n' ≤ n
            carried = (carry.transpose(1, 2) if reverse else carry) @ ends
            if state is not None:  # an initial state decays by λ^(C·(n+1)) to the end of chunk n
                n = torch.arange(1, N + 1, device=x.device, dtype=beta.dtype).view(1, N, 1)
                carried = carried + torch.exp(-beta.view(H, 1, 1) * C * n).to(acc) * state.unsqueeze(2)
        else:
            carried = _scan(ends, beta * C, state, reverse=reverse)
        if state is not None:
            entering = torch.cat([state.unsqueeze(2), carried[:, :, :-1]], dim=2)
        elif reverse:
            entering = torch.cat([carried[:, :, 1:], torch.zeros_like(carried[:, :, :1])], dim=2)
        else:
            entering = torch.cat([torch.zeros_like(carried[:, :, :1]), carried[:, :, :-1]], dim=2)
        t = torch.arange(C, 0, -1) if reverse else torch.arange(1, C + 1)
        reach = torch.exp(-beta.view(H, 1, 1) * t.to(x.device, beta.dtype).view(1, C, 1)).to(acc)
        out.addcmul_(reach.view(1, H, 1, C, 1), entering.unsqueeze(3))
    return out.reshape(B, H, N * C, D)[:, :, :T]


def _leaky_backward(
    g_out: Tensor,
    out: Tensor,
    beta: Tensor,
    state: Tensor | None,
    out_scale: Tensor | None = None,
    inplace: bool = False,
) -> tuple[Tensor, Tensor, Tensor | None]:
    """Gradients of k̄ = leaky_average(x, β, state) from dL/dk̄ and k̄ = out · out_scale (out_scale: (B, H, T, 1)).

    The recurrence is linear, so dL/dx is the same recurrence run backwards in time: g_x,t = Σ_{t' ≥ t} λ^{t'-t} g_t'.
    Since dk̄_t/dβ = -Σ_{j<t} λ^{t-j} k̄_j (with k̄_{-1} the state), exchanging the sums gives
    dL/dβ = -Σ_j k̄_j · (g_x,j - g_j) - state · λ g_x,0, which needs no second recurrence. ``inplace`` lets the
    reverse scan overwrite g_out. Runs in g_out's dtype: callers give it the accumulation dtype.
    """
    prod = g_out * out  # one scratch buffer for both dot products
    dots = -prod.sum(-1, keepdim=True)
    g_x = _scan(g_out, beta, reverse=True, inplace=inplace)
    dots += torch.mul(g_x, out, out=prod).sum(-1, keepdim=True)
    if out_scale is not None:
        dots = dots * out_scale
    g_beta = -head_sum(dots)
    g_state = None
    if state is not None:
        g_state = torch.exp(-beta).view(1, -1, 1).to(g_x.dtype) * g_x[:, :, 0]
        g_beta = g_beta - head_sum(state * g_state)
        g_state = g_state.to(state.dtype)
    return g_x, g_beta.to(beta.dtype), g_state


class _LeakyAverage(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, beta: Tensor, state: Tensor | None, chunk_size: int | None) -> tuple[Tensor, Tensor]:
        out = _scan(x, beta, state, chunk_size)
        last = out[:, :, -1].clone()
        out = out.to(x.dtype)
        ctx.save_for_backward(out, beta, state)
        return out, last

    @staticmethod
    def backward(ctx, g_out: Tensor, g_last: Tensor | None):
        out, beta, state = ctx.saved_tensors  # out is in x's dtype
        acc = accumulation_dtype(g_out.dtype)
        own = g_last is not None or g_out.dtype != acc  # then a copy of our own (autograd owns g_out), to overwrite
        if own:
            g_out = g_out.to(acc, copy=True)
        if g_last is not None:  # the last position also receives the state's gradient
            g_out[:, :, -1] += g_last
        g_x, g_beta, g_state = _leaky_backward(g_out, out, beta, state, inplace=own)
        return g_x.to(out.dtype), g_beta, g_state, None


def leaky_average(
    x: Tensor, beta: Tensor, state: Tensor | None = None, chunk_size: int | None = None
) -> tuple[Tensor, Tensor]:
    """Parallel leaky average; returns (k̄ for every position, k̄ at the last position).

    Forward and backward are both the chunked scan of ``_scan``: O(T) work and memory, never a T × T matrix (the
    authors' code builds one per layer). The outputs are in x's dtype, the state in the accumulation dtype.
    """
    if x.shape[2] == 1:  # streaming one token: the recurrence itself is cheapest
        last = leaky_average_step(x[:, :, 0], step_decay(beta, x.dtype), state)
        return last.unsqueeze(2).to(x.dtype), last
    return _LeakyAverage.apply(x, beta, state, chunk_size)


def scaled_leaky_keys_naive(
    x: Tensor, beta: Tensor, log_scale: Tensor, state: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """Reference for the whole key path of eq. (6), one time step at a time: k̄_t = x_t + λ_h k̄_{t-1}, then
    k_t = exp(log_scale_h) · k̄_t / (‖k̄_t‖ + ε). Returns (k for every position, k̄ at the last position)."""
    decay, scale = torch.exp(-beta).view(1, -1, 1), torch.exp(log_scale).view(1, -1, 1)
    k_bar = torch.zeros_like(x[:, :, 0]) if state is None else state
    keys = []
    for t in range(x.shape[2]):
        k_bar = decay * k_bar + x[:, :, t]
        keys.append(scale * k_bar / (k_bar.norm(dim=-1, keepdim=True) + NORM_EPS))
    return torch.stack(keys, dim=2), k_bar


def scaled_leaky_keys_step(
    x: Tensor, decay: Tensor, scale: Tensor, state: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """One streaming step of the key path: ``x`` is (B, H, 1, D), ``decay`` and ``scale`` come from
    ``key_constants``; returns (k in x's dtype, k̄ at this position in the accumulation dtype)."""
    last = leaky_average_step(x[:, :, 0], decay, state)
    return scaled_norm(last.unsqueeze(2), scale)[0].to(x.dtype), last


class _ScaledLeakyKeys(torch.autograd.Function):
    """Leaky average, normalisation and scale in one autograd node that keeps only the keys and their norms.

    The backward pass rebuilds k̄ = k·(‖k̄‖ + ε)/s from the keys, which the retrieval keeps anyway, so the key path adds
    no activation of its own to training memory.
    """

    @staticmethod
    def forward(ctx, x: Tensor, beta: Tensor, log_scale: Tensor, state: Tensor | None) -> tuple[Tensor, Tensor]:
        k_bar = _scan(x, beta, state)
        last = k_bar[:, :, -1].clone()
        # k̄ is rebuilt from k and the denominators ‖k̄‖ + ε when needed
        k, denom = scaled_norm(k_bar, head_scale(log_scale, k_bar.dtype), inplace=True)
        k = k.to(x.dtype)
        ctx.save_for_backward(k, denom, beta, log_scale, state)
        return k, last

    @staticmethod
    def backward(ctx, g_k: Tensor, g_last: Tensor | None):
        k, denom, beta, log_scale, state = ctx.saved_tensors
        x_dtype, k = k.dtype, k.to(denom.dtype)  # k was saved in x's dtype; denom is in the accumulation dtype
        scale = head_scale(log_scale, denom.dtype)
        g_bar, g_log_scale = scaled_norm_backward(g_k.to(denom.dtype), k, denom, scale)
        if g_last is not None:
            g_bar[:, :, -1] += g_last
        g_x, g_beta, g_state = _leaky_backward(g_bar, k, beta, state, out_scale=denom / scale, inplace=True)
        return g_x.to(x_dtype), g_beta, g_log_scale, g_state


class _ScaledLeakyKeysCPU(torch.autograd.Function):
    """The node of ``_ScaledLeakyKeys`` on the fused CPU kernels (``ops/kernels.py``): one pass over memory each way,
    keeping the same keys and norms. Tensors cross in the (B, T, H, D) layout that x and k have in memory."""

    @staticmethod
    def forward(ctx, x: Tensor, beta: Tensor, log_scale: Tensor, state: Tensor | None) -> tuple[Tensor, Tensor]:
        decay, scale = torch.exp(-beta), torch.exp(log_scale)
        k, norm, last = kernels.keys_forward(x.transpose(1, 2), decay, scale, state)
        ctx.save_for_backward(k, norm, decay, scale, state)
        return k.transpose(1, 2), last

    @staticmethod
    def backward(ctx, g_k: Tensor, g_last: Tensor | None):
        k, norm, decay, scale, state = ctx.saved_tensors
        g_k = g_k.transpose(1, 2).contiguous()  # a view where the retrieval's gradient is time-major already
        g_x, g_beta, g_log_scale, g_state = kernels.keys_backward(g_k, k, norm, decay, scale, state, g_last)
        g_state = None if state is None else g_state
        return g_x.transpose(1, 2), g_beta.sum(0).to(decay.dtype), g_log_scale.sum(0).to(scale.dtype), g_state


def scaled_leaky_keys(x: Tensor, beta: Tensor, log_scale: Tensor, state: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Keys of eq. (6) from projected inputs ``x`` (B, H, T, D): (k for every position, k̄ at the last position)."""
    if x.shape[2] > 1:
        if kernels.applies(x, beta, log_scale, state):
            return _ScaledLeakyKeysCPU.apply(x, beta, log_scale, state)
        return _ScaledLeakyKeys.apply(x, beta, log_scale, state)
    return scaled_leaky_keys_step(x, *key_constants(beta, log_scale, x.dtype), state)
