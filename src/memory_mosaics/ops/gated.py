"""The gated, time-variant key extractor of Memory Mosaics v2 (eq. 8 of "Memory Mosaics at scale"):

    k̄_t = g_t · k̃_t + λ_t · k̄_{t-1},   g_t = exp(a_t),   λ_t = exp(-|b_t|),   k_t = k̄_t / (‖k̄_t‖ + ε)

with per-token, per-head gate pre-activations a_t = W_g x_t and b_t = W_λ x_t. Three forms, as for v1:
  * ``gated_keys_naive``: the recurrence itself, one step at a time, with plain exponentials (tests only; run it in
    fp64, where exp(a) stays finite for |a| < 700);
  * ``gated_keys``: the chunked parallel form for training, O(T·C) work and memory (never a T×T matrix);
  * ``gated_keys_step``: the O(1) update for streaming.

Numerics. g_t is an unbounded exponential, so k̄ overflows fp32 for a_t > 88 and a run of large gates. Norm is
scale-invariant, so both fast forms carry k̄ = exp(s)·u, a log-scale s (B, H) beside a bounded u (B, H, D), as mLSTM
stabilises its exponential gates: each new u is a sum of exp(w - m)·(term) with m the largest log-weight w of the
terms, so every weight is ≤ 1 and the largest is exactly 1. The ε of Norm is applied at the true scale,
k = u / (‖u‖ + ε·exp(-s)), so the result equals the naive form's (it is 0 where k̄ underflows in fp32 too). Within a
chunk, the log-decays Σ_{j=i+1..t} log λ_j are summed over their own terms (a masked cumulative sum, as Mamba-2's
segment sums), not as a difference of two long prefix sums, which loses digits when the decays are large.

Shapes: ``x`` (k̃) is (B, H, T, D); ``a`` and ``b`` are (B, H, T); a state is (u, s) at the last position,
(B, H, D) and (B, H). Half-precision inputs accumulate in fp32 and the keys return in the input's dtype; states stay in
fp32 (as ``ops/leaky.py``).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from memory_mosaics.ops.leaky import accumulation_dtype
from memory_mosaics.ops.norm import NORM_EPS

GatedState = tuple[Tensor, Tensor]  # (u, s): k̄ = exp(s)·u at the last position seen
DEFAULT_CHUNK = 32


def gated_keys_naive(x: Tensor, a: Tensor, b: Tensor, state: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Reference: unit-norm keys (B, H, T, D) and k̄ at the last position (the plain state, not (u, s))."""
    h = torch.zeros_like(x[:, :, 0]) if state is None else state
    keys = []
    for t in range(x.shape[2]):
        h = torch.exp(a[:, :, t, None]) * x[:, :, t] + torch.exp(-b[:, :, t, None].abs()) * h
        keys.append(h / (h.norm(dim=-1, keepdim=True) + NORM_EPS))
    return torch.stack(keys, dim=2), h


LOG_EPS = math.log(NORM_EPS)
MAX_LOG_EPS_TERM = 80.0  # ε·exp(-s) is capped at e^80 (< the fp32 maximum, e^88.7): the key is ~0 there anyway


def _normalise(u: Tensor, s: Tensor) -> Tensor:
    """k̄ / (‖k̄‖ + ε) for k̄ = exp(s)·u, without forming k̄ (s has u's shape but the last dimension). Where ε·exp(-s)
    would overflow (k̄ below ε·e^-80), it is capped, so the key is ~1e-35·‖u‖ instead of 0 and its gradient finite."""
    eps = torch.exp((LOG_EPS - s).clamp_max(MAX_LOG_EPS_TERM)).unsqueeze(-1)
    return u / (u.norm(dim=-1, keepdim=True) + eps)


def _segment_sums(log_decay: Tensor) -> Tensor:
    """S[..., t, i] = Σ_{j=i+1..t} log_decay[..., j] for i ≤ t, -inf above the diagonal: (..., L) -> (..., L, L)."""
    L = log_decay.shape[-1]
    below = torch.ones(L, L, dtype=torch.bool, device=log_decay.device).tril(-1)
    terms = log_decay.unsqueeze(-1).expand(*log_decay.shape, L).masked_fill(~below, 0)  # [j, i] = c_j for j > i
    sums = terms.cumsum(dim=-2)
    return sums.masked_fill(~below.logical_or(torch.eye(L, dtype=torch.bool, device=log_decay.device)), float("-inf"))


def _intra(x: Tensor, a: Tensor, c: Tensor) -> tuple[Tensor, Tensor]:
    """Every chunk at once, as if it started the sequence: u and its log-scale s at each position (x: (..., L, D);
    a and c = log λ: (..., L)). The stabiliser is the largest log-weight of the row, so no weight exceeds 1."""
    w = _segment_sums(c) + a.unsqueeze(-2)  # log-weight of token i at position t: a_i + Σ_{j=i+1..t} c_j
    m = w.amax(dim=-1).detach()  # the keys do not depend on the stabiliser: no gradient through it
    return torch.exp(w - m.unsqueeze(-1)) @ x, m


def _carry(u: Tensor, s: Tensor, c: Tensor, state: GatedState | None) -> tuple[Tensor, Tensor]:
    """The state entering each chunk, (B, H, N, D) and (B, H, N), from the chunks' own final (u, s) (B, H, N, ...) and
    total log-decays: a scan over chunks, N small steps (the work is in ``_intra``). No state: the first is empty."""
    u0, s0 = state if state is not None else (torch.zeros_like(u[:, :, 0]), torch.full_like(s[:, :, 0], -math.inf))
    us, ss = [u0], [s0]
    for n in range(u.shape[2] - 1):
        w0 = ss[-1] + c[:, :, n]  # the carried log-scale at the chunk's end
        m = torch.maximum(w0, s[:, :, n]).detach()
        us.append(torch.exp(w0 - m).unsqueeze(-1) * us[-1] + torch.exp(s[:, :, n] - m).unsqueeze(-1) * u[:, :, n])
        ss.append(m)
    return torch.stack(us, dim=2), torch.stack(ss, dim=2)


def gated_keys(
    x: Tensor, a: Tensor, b: Tensor, state: GatedState | None = None, chunk: int = DEFAULT_CHUNK
) -> tuple[Tensor, GatedState]:
    """Unit-norm keys (B, H, T, D) and the state (u, s) after the last position; ``state`` continues a sequence.
    Differentiable in x, a, b and the state. The chunks run side by side (``_intra``), then each adds the state its
    predecessors carried in (``_carry``): no loop over positions, no slice of the sequence per chunk in autograd."""
    if x.dim() != 4 or a.shape != x.shape[:3] or b.shape != x.shape[:3]:
        raise ValueError(f"x must be (B, H, T, D) and a, b (B, H, T); got {tuple(x.shape)}, {tuple(a.shape)}, "
                         f"{tuple(b.shape)}")  # fmt: skip
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1, got {chunk}")
    B, H, T, D = x.shape
    acc = accumulation_dtype(x.dtype)
    L = min(chunk, T)
    pad = -T % L  # the last chunk is padded after the sequence; causality keeps the padding out of every real key
    x32, a32, c32 = x.to(acc), a.to(acc), -b.to(acc).abs()
    if pad:
        x32, a32, c32 = F.pad(x32, (0, 0, 0, pad)), F.pad(a32, (0, pad)), F.pad(c32, (0, pad))
    N = (T + pad) // L
    x32, a32, c32 = x32.view(B, H, N, L, D), a32.view(B, H, N, L), c32.view(B, H, N, L)
    u, s = _intra(x32, a32, c32)
    decay = c32.cumsum(dim=-1)  # log-decay from each chunk's start to each of its positions
    u0, s0 = _carry(u[:, :, :, -1], s[:, :, :, -1], decay[:, :, :, -1], state)
    w0 = s0.unsqueeze(-1) + decay  # log-scale of the carried state at each position
    m = torch.maximum(w0, s).detach()
    u = torch.exp(s - m).unsqueeze(-1) * u + torch.exp(w0 - m).unsqueeze(-1) * u0.unsqueeze(-2)
    u, m = u.reshape(B, H, N * L, D)[:, :, :T], m.reshape(B, H, N * L)[:, :, :T]
    return _normalise(u, m).to(x.dtype), (u[:, :, -1], m[:, :, -1])


def gated_keys_step(x: Tensor, a: Tensor, b: Tensor, state: GatedState | None = None) -> tuple[Tensor, GatedState]:
    """One position: x (B, H, D), a and b (B, H) -> the unit-norm key (B, H, D) and the new state (u, s)."""
    acc = accumulation_dtype(x.dtype)
    x32, a32 = x.to(acc), a.to(acc)
    if state is None:
        u, s = x32, a32
    else:
        u0, s0 = state
        w0 = s0 - b.to(acc).abs()
        s = torch.maximum(w0, a32)
        u = torch.exp(w0 - s).unsqueeze(-1) * u0 + torch.exp(a32 - s).unsqueeze(-1) * x32
    return _normalise(u, s).to(x.dtype), (u, s)
