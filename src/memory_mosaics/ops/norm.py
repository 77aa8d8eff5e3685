"""The scaled normalisation of eq. (6), shared by keys and values: x / (‖x‖ + ε) · exp(log_scale_h) per head."""

from __future__ import annotations

import torch
from torch import Tensor

NORM_EPS = 1e-10


def head_scale(log_scale: Tensor, dtype: torch.dtype) -> Tensor:
    """exp(log_scale_h), shaped to broadcast over (B, H, T, D)."""
    return torch.exp(log_scale).view(1, -1, 1, 1).to(dtype)


def head_sum(x: Tensor) -> Tensor:
    """Per-head sum of x (B, H, ...) over every other dimension, accumulated in at least fp32 (a parameter's grad)."""
    dims = [d for d in range(x.dim()) if d != 1]
    return x.sum(dim=dims, dtype=torch.promote_types(x.dtype, torch.float32))


def scaled_norm(x: Tensor, scale: Tensor, inplace: bool = False) -> tuple[Tensor, Tensor]:
    """The normalised, scaled x (B, H, T, D), and its denominator ‖x‖ + ε (what a backward pass needs).

    ``scale`` is ``head_scale(log_scale, x.dtype)``; ``inplace`` overwrites x (for autograd functions that own it)."""
    denom = x.norm(dim=-1, keepdim=True) + NORM_EPS
    factor = scale / denom  # one (B, H, T, 1) factor: a single pass over x
    return (x.mul_(factor) if inplace else x * factor), denom


def scaled_norm_backward(grad: Tensor, out: Tensor, denom: Tensor, scale: Tensor) -> tuple[Tensor, Tensor]:
    """dL/dx and dL/dlog_scale from dL/d(out) for out = scale·x/denom, denom = ‖x‖ + ε, rebuilt from the output alone.

    dL/dx = (scale/denom)·g - out·(out·g)/(scale·‖x‖), since x/‖x‖ = out·denom/(scale·‖x‖); dL/dlog_scale_h = Σ out·g.
    """
    g_x = grad * out  # scratch for the dot product first, then the result: one fresh buffer
    dot = g_x.sum(-1, keepdim=True)
    norm = (denom - NORM_EPS).clamp_min(torch.finfo(out.dtype).tiny)  # ‖x‖, kept finite for x = 0
    torch.mul(grad, scale / denom, out=g_x)
    g_x.addcmul_(out, dot / (scale * norm), value=-1)
    return g_x, head_sum(dot)
