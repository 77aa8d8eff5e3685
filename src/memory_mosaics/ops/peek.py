"""Peek-ahead values of eq. (6): v_t = r_h · m_t / (‖m_t‖ + ε) with m_t = (1 - c_h)·u_{t+1} + c_h·u_t.

Three forms: ``peek_values_naive``, a loop over positions (tests only); ``peek_values``, the parallel form for training
and evaluation: one autograd node that keeps only u and the norms (the values themselves are kept by the retrieval),
instead of the four activations autograd would keep (for fp32 CPU tensors, on the fused kernels of ``ops/kernels.py``);
``peek_values_step``, the streaming form, where u_{t+1} is the next token's projection, with the per-head constants of
``value_constants``. The last position has no successor and takes u_T = 0; a look-ahead ≥ 1 never reads its value.
"""

from __future__ import annotations

import torch
from torch import Tensor

from memory_mosaics.ops import kernels
from memory_mosaics.ops.norm import NORM_EPS, head_scale, head_sum, scaled_norm, scaled_norm_backward


def value_constants(coef: Tensor, log_scale: Tensor, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    """The per-head mixing weight c_h and value scale r_h, shaped (1, H, 1, 1). A streaming layer keeps them instead of
    deriving them from the parameters for every token."""
    return coef.view(1, -1, 1, 1).to(dtype), head_scale(log_scale, dtype)


def peek_values_step(u_next: Tensor, u_now: Tensor, c: Tensor, scale: Tensor) -> Tensor:
    """Values from the projections of the next and the current tokens; ``c`` and ``scale`` from ``value_constants``."""
    return scaled_norm(torch.addcmul(u_now * c, u_next, 1 - c), scale)[0]


def peek_values_naive(u: Tensor, coef: Tensor, log_scale: Tensor) -> Tensor:
    """Reference, one position at a time: v_t = exp(log_scale_h) · m_t / (‖m_t‖ + ε) with
    m_t = (1 - c_h)·u_{t+1} + c_h·u_t, and u_T = 0 after the last position."""
    c, scale = coef.view(1, -1, 1), torch.exp(log_scale).view(1, -1, 1)
    T = u.shape[2]
    values = []
    for t in range(T):
        u_next = u[:, :, t + 1] if t + 1 < T else torch.zeros_like(u[:, :, t])
        m = (1 - c) * u_next + c * u[:, :, t]
        values.append(scale * m / (m.norm(dim=-1, keepdim=True) + NORM_EPS))
    return torch.stack(values, dim=2)


class _PeekValues(torch.autograd.Function):
    @staticmethod
    def forward(ctx, u: Tensor, coef: Tensor, log_scale: Tensor) -> Tensor:
        c, scale = value_constants(coef, log_scale, u.dtype)
        m = u * c
        m[:, :, :-1].addcmul_(u[:, :, 1:], 1 - c)
        v, denom = scaled_norm(m, scale, inplace=True)
        ctx.save_for_backward(u, v, denom, coef, log_scale)
        return v

    @staticmethod
    def backward(ctx, g_v: Tensor):
        u, v, denom, coef, log_scale = ctx.saved_tensors
        c, scale = value_constants(coef, log_scale, u.dtype)
        g_m, g_log_scale = scaled_norm_backward(g_v, v, denom, scale)
        # dm_t/dc = u_t - u_{t+1}; one scratch buffer serves both dot products, then holds g_u
        scratch = g_m * u
        g_coef = head_sum(scratch)
        g_coef -= head_sum(torch.mul(g_m[:, :, :-1], u[:, :, 1:], out=scratch[:, :, :-1]))
        g_u = torch.mul(g_m, c, out=scratch)  # u_t enters m_t with weight c ...
        g_u[:, :, 1:].addcmul_(g_m[:, :, :-1], 1 - c)  # ... and m_{t-1} with weight 1 - c
        return g_u, g_coef, g_log_scale


class _PeekValuesCPU(torch.autograd.Function):
    """The node of ``_PeekValues`` on the fused CPU kernels (``ops/kernels.py``), in u's (B, T, H, D) memory layout."""

    @staticmethod
    def forward(ctx, u: Tensor, coef: Tensor, log_scale: Tensor) -> Tensor:
        u = u.transpose(1, 2)
        scale = torch.exp(log_scale)
        v, norm = kernels.values_forward(u, coef, scale)
        ctx.save_for_backward(u, v, norm, coef, scale)
        return v.transpose(1, 2)

    @staticmethod
    def backward(ctx, g_v: Tensor):
        u, v, norm, coef, scale = ctx.saved_tensors
        g_u, g_coef, g_log_scale = kernels.values_backward(g_v.transpose(1, 2).contiguous(), u, v, norm, coef, scale)
        return g_u.transpose(1, 2), g_coef.sum(0).to(coef.dtype), g_log_scale.sum(0).to(scale.dtype)


def peek_values(u: Tensor, coef: Tensor, log_scale: Tensor) -> Tensor:
    """Values for every position of a full sequence of projections u = W_v x, (B, H, T, D), with or without autograd."""
    if u.shape[2] > 1 and kernels.applies(u, coef, log_scale):
        return _PeekValuesCPU.apply(u, coef, log_scale)
    return _PeekValues.apply(u, coef, log_scale)
