"""Feature extractors of eq. (6): keys φ summarise the recent past, values ψ peek one step into the future."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from memory_mosaics.ops.leaky import key_constants, scaled_leaky_keys, scaled_leaky_keys_step
from memory_mosaics.ops.peek import peek_values, peek_values_step, value_constants
from memory_mosaics.state import ParamCache

# The authors' parametrisation, kept so that their checkpoints map one to one: every per-head scalar p enters ten times
# larger (β_h = 10·|p|, a scale exp(10·p)), so an Adam step on p moves the value it sets ten times as far.
PARAM_GAIN = 10
MAX_LOG_SCALE = math.log(65535)  # the authors clamp the key scale exponent here


def split_heads(x: Tensor, n_head: int) -> Tensor:
    """(B, T, d) -> (B, H, T, d/H)."""
    B, T, d = x.shape
    return x.view(B, T, n_head, d // n_head).transpose(1, 2)


def merge_heads(x: Tensor) -> Tensor:
    """(B, H, T, hs) -> (B, T, H·hs)."""
    B, H, T, hs = x.shape
    return x.transpose(1, 2).reshape(B, T, H * hs)


class KeyExtractor(nn.Module):
    """φ: k_t = s_h · k̄_t/‖k̄_t‖ with k̄_t = Σ_{i≤t} exp(-β_h (t-i)) W_k x_i.

    Parameters follow the authors' parametrisation (so their checkpoints map one to one): β_h = 10·|leaky_key_beta_h|,
    s_h = exp(min(10·scale_power·key_scale_h, log 65535)). Since queries equal keys, the kernel bandwidth of eq. (3) is
    s_h². A persistent memory uses ``scale_power = 2``, because its bank keys carry no scale of their own.
    """

    def __init__(self, n_embd: int, n_head: int, bias: bool = True, scale_power: int = 1) -> None:
        super().__init__()
        self.n_head = n_head
        self.scale_power = scale_power
        self.W_k = nn.Linear(n_embd, n_embd, bias=bias)
        self.leaky_key_beta = nn.Parameter(torch.linspace(0.5, 5.0, n_head) / PARAM_GAIN)  # λ_h from 0.61 to 0.007
        self.key_scale = nn.Parameter(torch.full((n_head,), 0.1))

    @property
    def decay_rate(self) -> Tensor:
        """β_h, so that the leaky-average coefficient is λ_h = exp(-β_h)."""
        return PARAM_GAIN * self.leaky_key_beta.abs()

    @property
    def log_scale(self) -> Tensor:
        """log s_h, clamped at log 65535."""
        return torch.clamp(PARAM_GAIN * self.scale_power * self.key_scale, max=MAX_LOG_SCALE)

    def forward(
        self, x: Tensor, leaky_state: Tensor | None = None, cache: ParamCache | None = None
    ) -> tuple[Tensor, Tensor]:
        """Keys (B, H, T, hs) for inputs (B, T, d), and the new leaky state k̄ at the last position.

        A streaming layer passes its state's ``cache``, which keeps the step form's per-head constants."""
        u = split_heads(self.W_k(x), self.n_head)
        if cache is not None and u.shape[2] == 1:
            constants = cache.get(self, u.dtype, lambda: key_constants(self.decay_rate, self.log_scale, u.dtype))
            return scaled_leaky_keys_step(u, *constants, leaky_state)
        return scaled_leaky_keys(u, self.decay_rate, self.log_scale, leaky_state)


class ValueExtractor(nn.Module):
    """ψ (peek-ahead): v_t = r_h · Norm((1 - c_h)·u_{t+1} + c_h·u_t), with u = W_v x and r_h = exp(10·val_scale_h).

    In a full sequence the last position has no successor; it takes u_{T} = 0 and its value is never read, because
    retrieval with look-ahead ≥ 1 excludes it.
    """

    def __init__(self, n_embd: int, n_head: int, bias: bool = True) -> None:
        super().__init__()
        self.n_head = n_head
        self.W_v = nn.Linear(n_embd, n_embd, bias=bias)
        self.coef = nn.Parameter(torch.rand(n_head))
        self.val_scale = nn.Parameter(torch.full((n_head,), -0.05))

    @property
    def log_scale(self) -> Tensor:
        """log r_h."""
        return PARAM_GAIN * self.val_scale

    def project(self, x: Tensor) -> Tensor:
        """u = W_v x per head, (B, H, T, hs)."""
        return split_heads(self.W_v(x), self.n_head)

    def combine(self, u_next: Tensor, u_now: Tensor, cache: ParamCache | None = None) -> Tensor:
        """Values from the projections of the next and the current tokens (the streaming form); ``cache`` as for
        keys."""

        def make() -> tuple[Tensor, Tensor]:
            return value_constants(self.coef, self.log_scale, u_now.dtype)

        return peek_values_step(u_next, u_now, *(make() if cache is None else cache.get(self, u_now.dtype, make)))

    def forward(self, x: Tensor) -> Tensor:
        return peek_values(self.project(x), self.coef, self.log_scale)
