"""Peek-ahead values of eq. (6): v_t = r_h · m_t / (‖m_t‖ + ε) with m_t = (1 - c_h)·u_{t+1} + c_h·u_t.

``peek_values_naive`` is the composition of tensor operations (reference); ``peek_values`` is the training form: one
autograd node that keeps only u and the norms (the values themselves are kept by the retrieval), instead of the four
activations autograd would keep (for fp32 CPU tensors, on the fused kernels of ``ops/kernels.py``);
``peek_values_step`` is the streaming form, where u_{t+1} is the next token's
projection, with the per-head constants of ``value_constants``.
The last position has no successor and takes u_T = 0; a look-ahead ≥ 1 never reads its value.
"""

from __future__ import annotations

import torch
from torch import Tensor

from memory_mosaics.ops import kernels
from memory_mosaics.ops.norm import head_scale, head_sum, scaled_norm, scaled_norm_backward


def _shift_up(u: Tensor) -> Tensor:
    """u_{t+1} for every t, with zero after the last position; u is (B, H, T, D)."""
    return torch.cat([u[:, :, 1:], torch.zeros_like(u[:, :, :1])], dim=2)


def value_constants(coef: Tensor, log_scale: Tensor, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    """The per-head mixing weight c_h and value scale r_h, shaped (1, H, 1, 1). A streaming layer keeps them instead of
    deriving them from the parameters for every token."""
    return coef.view(1, -1, 1, 1).to(dtype), head_scale(log_scale, dtype)


def peek_values_step(u_next: Tensor, u_now: Tensor, c: Tensor, scale: Tensor) -> Tensor:
    """Values from the projections of the next and the current tokens; ``c`` and ``scale`` from ``value_constants``."""
    return scaled_norm(torch.addcmul(u_now * c, u_next, 1 - c), scale)[0]


def peek_values_naive(u: Tensor, coef: Tensor, log_scale: Tensor) -> Tensor:
    return peek_values_step(_shift_up(u), u, *value_constants(coef, log_scale, u.dtype))


class _PeekValues(torch.autograd.Function):
    @staticmethod
    def forward(ctx, u: Tensor, coef: Tensor, log_scale: Tensor) -> Tensor:
        c, scale = value_constants(coef, log_scale, u.dtype)
        m = u * c
        m[:, :, :-1].addcmul_(u[:, :, 1:], 1 - c)
        v, q = scaled_norm(m, scale, inplace=True)
        ctx.save_for_backward(u, v, q, coef, log_scale)
        return v

    @staticmethod
    def backward(ctx, g_v: Tensor):
        u, v, q, coef, log_scale = ctx.saved_tensors
        c, scale = value_constants(coef, log_scale, u.dtype)
        g_m, g_log_scale = scaled_norm_backward(g_v, v, q, scale)
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
    """Values for every position of a full sequence of projections u = W_v x, (B, H, T, D)."""
    if u.shape[2] > 1 and kernels.applies(u, coef, log_scale):
        return _PeekValuesCPU.apply(u, coef, log_scale)
    if torch.is_grad_enabled():
        return _PeekValues.apply(u, coef, log_scale)
    return peek_values_naive(u, coef, log_scale)
