"""Leaky average of eq. (6): k̄_t = k̃_t + λ k̄_{t-1}, one decay λ_h = exp(-β_h) per head.

Three forms, as in flash-linear-attention:
  * ``leaky_average_naive``: an explicit loop over time (tests only);
  * ``leaky_average``: the chunked parallel form for training, O(T·C) work and O(T) memory;
  * ``leaky_average_step``: the O(1) update for streaming.

Shapes: ``x`` is (B, H, T, D); ``beta`` is (H,) with β_h ≥ 0; a state is k̄ at the last position, (B, H, D).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from memory_mosaics.ops.norm import head_scale, scaled_norm, scaled_norm_backward

DEFAULT_CHUNK = 16  # measured fastest on CPU at T = 512 and 2048 (benchmarks/throughput.py)


def leaky_average_naive(x: Tensor, beta: Tensor, state: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Reference: the recurrence itself, one time step at a time."""
    decay = torch.exp(-beta).view(1, -1, 1)
    h = torch.zeros_like(x[:, :, 0]) if state is None else state
    out = []
    for t in range(x.shape[2]):
        h = decay * h + x[:, :, t]
        out.append(h)
    return torch.stack(out, dim=2), h


def leaky_average_step(x: Tensor, beta: Tensor, state: Tensor | None = None) -> Tensor:
    """One streaming step: ``x`` is (B, H, D), returns the new state k̄_t (which is also the output)."""
    if state is None:
        return x
    return torch.exp(-beta).view(1, -1, 1) * state + x


def _decay_matrix(beta: Tensor, n: int, stride: int, dtype: torch.dtype) -> Tensor:
    """(H, n, n) lower-triangular matrix exp(-β·stride·(t - i)) for i ≤ t, zero above the diagonal."""
    idx = torch.arange(n, device=beta.device)
    gap = (idx[:, None] - idx[None, :]).to(beta.dtype)
    causal = gap >= 0
    m = torch.exp(-beta.view(-1, 1, 1) * stride * gap.clamp(min=0))
    return (m * causal).to(dtype)


def leaky_average(
    x: Tensor, beta: Tensor, state: Tensor | None = None, chunk_size: int = DEFAULT_CHUNK
) -> tuple[Tensor, Tensor]:
    """Parallel leaky average; returns (k̄ for every position, k̄ at the last position).

    The sequence is cut into chunks of C steps. Inside a chunk the recurrence is a (C × C) decay matrix applied by one
    batched matmul; across the T/C chunks the carried states follow the same recurrence with decay λ^C, again a small
    ((T/C) × (T/C)) matrix. No T × T matrix is ever formed (the authors' code builds one per layer).
    """
    B, H, T, D = x.shape
    if T == 1:  # streaming one token: the recurrence itself is cheapest
        out = leaky_average_step(x[:, :, 0], beta, state)
        return out.unsqueeze(2), out
    C = min(chunk_size, T)
    pad = (-T) % C
    if pad:  # zeros appended at the end cannot change earlier outputs of a causal recurrence
        x = F.pad(x, (0, 0, 0, pad))
    N = x.shape[2] // C
    xc = x.reshape(B, H, N, C, D)
    beta = beta.to(torch.promote_types(beta.dtype, torch.float32))  # decays in ≥ fp32, even under bf16
    intra = _decay_matrix(beta, C, 1, x.dtype).unsqueeze(1) @ xc  # (B, H, N, C, D), zero initial state per chunk
    local = intra[:, :, :, -1]  # each chunk's final value from its own inputs, (B, H, N, D)
    carried = _decay_matrix(beta, N, C, x.dtype) @ local  # true state at the end of each chunk, without `state`
    n = torch.arange(N, device=x.device, dtype=beta.dtype)
    t = torch.arange(1, C + 1, device=x.device, dtype=beta.dtype)
    if state is not None:  # an initial state decays by λ^(C·(n+1)) to the end of chunk n
        carried = carried + torch.exp(-beta.view(H, 1, 1) * C * (n + 1).view(1, N, 1)).to(x.dtype) * state.unsqueeze(2)
        prev = torch.cat([state.unsqueeze(2), carried[:, :, :-1]], dim=2)
    else:
        prev = F.pad(carried[:, :, :-1], (0, 0, 1, 0))
    # the state entering chunk n reaches step t of the chunk after t + 1 decays
    into = torch.exp(-beta.view(H, 1, 1) * t.view(1, C, 1)).to(x.dtype)  # (H, C, 1)
    out = intra + into.unsqueeze(1) * prev.unsqueeze(3)
    out = out.reshape(B, H, N * C, D)[:, :, :T]
    return out, out[:, :, -1]


def scaled_leaky_keys_naive(
    x: Tensor, beta: Tensor, log_scale: Tensor, state: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """Reference for the whole key path of eq. (6): k_t = exp(log_scale_h) · k̄_t / (‖k̄_t‖ + ε)."""
    k_bar, last = leaky_average(x, beta, state)
    return scaled_norm(k_bar, log_scale)[0], last


class _ScaledLeakyKeys(torch.autograd.Function):
    """Leaky average, normalisation and scale in one autograd node that keeps only the keys and their norms.

    The backward pass rebuilds k̄ = k·(‖k̄‖ + ε)/s from the keys, which the retrieval keeps anyway, so the key path adds
    no activation of its own to training memory. The leaky average is linear: its input gradient is the same recurrence
    run backwards in time, and dk̄_t/dβ = -z_t with z_t = λ (z_{t-1} + k̄_{t-1}), again a leaky average.
    """

    @staticmethod
    def forward(ctx, x: Tensor, beta: Tensor, log_scale: Tensor, state: Tensor | None) -> tuple[Tensor, Tensor]:
        k_bar, last = leaky_average(x, beta, state)
        k, q = scaled_norm(k_bar, log_scale)
        ctx.save_for_backward(k, q, beta, log_scale, state)
        return k, last

    @staticmethod
    def backward(ctx, g_k: Tensor, g_last: Tensor | None):
        k, q, beta, log_scale, state = ctx.saved_tensors
        scale = head_scale(log_scale, k.dtype)
        g_log_scale = (g_k * k).sum(dim=(0, 2, 3))
        g_bar = scaled_norm_backward(g_k, k, q, scale)
        if g_last is not None:
            g_bar[:, :, -1] += g_last
        decay = torch.exp(-beta).view(1, -1, 1, 1).to(k.dtype)
        g_x = leaky_average(g_bar.flip(2), beta)[0].flip(2)  # Σ_{t' ≥ t} λ^{t'-t} g_t'
        k_bar = k / scale * q
        prev = torch.cat(
            [torch.zeros_like(k_bar[:, :, :1]) if state is None else state.unsqueeze(2), k_bar[:, :, :-1]], 2
        )
        z = decay * leaky_average(prev, beta)[0]
        g_beta = -(g_bar * z).sum(dim=(0, 2, 3))
        g_state = None if state is None else decay[:, :, 0] * g_x[:, :, 0]
        return g_x, g_beta, g_log_scale, g_state


def scaled_leaky_keys(x: Tensor, beta: Tensor, log_scale: Tensor, state: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Keys of eq. (6) from projected inputs ``x`` (B, H, T, D): (k for every position, k̄ at the last position)."""
    if torch.is_grad_enabled() and x.shape[2] > 1:
        return _ScaledLeakyKeys.apply(x, beta, log_scale, state)
    return scaled_leaky_keys_naive(x, beta, log_scale, state)
