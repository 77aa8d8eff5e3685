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
