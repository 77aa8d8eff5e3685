"""The scaled normalisation of eq. (6), shared by keys and values: x / (‖x‖ + ε) · exp(log_scale_h) per head."""

from __future__ import annotations

import torch
from torch import Tensor

NORM_EPS = 1e-10


def head_scale(log_scale: Tensor, dtype: torch.dtype) -> Tensor:
    """exp(log_scale_h), shaped to broadcast over (B, H, T, D)."""
    return torch.exp(log_scale).view(1, -1, 1, 1).to(dtype)


def scaled_norm(x: Tensor, log_scale: Tensor) -> tuple[Tensor, Tensor]:
    """The normalised, scaled x (B, H, T, D), and its denominator ‖x‖ + ε (what a backward pass needs)."""
    q = x.norm(dim=-1, keepdim=True) + NORM_EPS
    return x / q * head_scale(log_scale, x.dtype), q


def scaled_norm_backward(grad: Tensor, out: Tensor, q: Tensor, scale: Tensor) -> Tensor:
    """dL/dx from dL/d(out) for out = scale·x/q, q = ‖x‖ + ε, rebuilt from the output alone:
    (scale/q)·(g - n·(n·g)·q/‖x‖) with n = out/scale."""
    n = out / scale
    r = (q - NORM_EPS).clamp_min(torch.finfo(out.dtype).tiny)  # ‖x‖, kept finite for x = 0
    return scale / q * (grad - n * (n * grad).sum(-1, keepdim=True) * (q / r))
