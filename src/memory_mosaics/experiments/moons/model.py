"""The 54-parameter networks of Figure 3: one contextual memory layer with complex 3×3 maps W_φ, W_ψ, W_z.

k_T = W_φ x_T and v_T = W_ψ x_{T+1}, split into N_h heads (C^3 keys for N_h = 1, C^1 keys for N_h = 3);
y_T^(h) = Σ_{t<T} softmax_t(β Re⟨k_T^(h), k_t^(h)⟩) v_t^(h) with β = 50 fixed and no normalisation;
z_T = W_z Stack_h y_T^(h) predicts x_{T+1}. A complex number is stored as a (re, im) pair of reals, so
Re⟨a, b⟩ is the real dot product and the library's ``retrieval`` (look-ahead 1, scale β) is eq. (3) as is.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from memory_mosaics.ops.retrieval import retrieval

N_MOONS = 3
BETA = 50.0


def complex_matrix(w: Tensor) -> Tensor:
    """The real (2n × 2m) matrix of a complex (n × m) matrix stored as w[..., 0] + i w[..., 1]: 2×2 blocks
    [[a, −b], [b, a]] acting on (re, im) pairs."""
    a, b = w[..., 0], w[..., 1]
    blocks = torch.stack((torch.stack((a, -b), -1), torch.stack((b, a), -1)), -2)  # (n, m, 2, 2): [out re/im, in re/im]
    n, m = a.shape[-2:]
    return blocks.transpose(-3, -2).reshape(*a.shape[:-2], 2 * n, 2 * m)


def complex_linear(x: Tensor, w: Tensor) -> Tensor:
    """W x for complex vectors x (..., 2m) stored as interleaved (re, im) pairs and W (n, m, 2); returns (..., 2n)."""
    return x @ complex_matrix(w).transpose(-1, -2)


def init_complex(n: int, m: int, generator: torch.Generator | None = None) -> Tensor:
    """The authors' initialisation: a real (2n × 2m) matrix drawn like a default Linear layer, U(±1/√(2m)), projected
    onto the complex matrices (a = mean of the two diagonal entries of a block, b = half their antisymmetric part)."""
    bound = 1 / math.sqrt(2 * m)
    r = (torch.rand(2 * n, 2 * m, generator=generator) * 2 - 1) * bound
    a = (r[0::2, 0::2] + r[1::2, 1::2]) / 2
    b = (r[1::2, 0::2] - r[0::2, 1::2]) / 2
    return torch.stack((a, b), -1)


class MoonsNet(nn.Module):
    """Figure 3 with N_h ∈ {1, 3} memory units; 3 complex 3×3 matrices = 54 real parameters, no bias."""

    def __init__(self, n_heads: int, beta: float = BETA, generator: torch.Generator | None = None) -> None:
        super().__init__()
        if N_MOONS % n_heads:
            raise ValueError(f"n_heads must divide {N_MOONS}, got {n_heads}")
        self.n_heads, self.beta = n_heads, beta
        self.W_phi = nn.Parameter(init_complex(N_MOONS, N_MOONS, generator))  # keys
        self.W_psi = nn.Parameter(init_complex(N_MOONS, N_MOONS, generator))  # values
        self.W_z = nn.Parameter(init_complex(N_MOONS, N_MOONS, generator))  # output

    def split_heads(self, u: Tensor) -> Tensor:
        """(..., T, 6) -> (..., H, T, 6 / H): head h owns complex coordinates h·3/H .. (h+1)·3/H."""
        return u.unflatten(-1, (self.n_heads, -1)).transpose(-3, -2)

    def keys(self, x: Tensor) -> Tensor:
        return self.split_heads(complex_linear(x, self.W_phi))

    def values(self, x_next: Tensor) -> Tensor:
        return self.split_heads(complex_linear(x_next, self.W_psi))

    def output(self, y: Tensor) -> Tensor:
        """(..., H, T, 6 / H) retrieved values -> z (..., T, 6)."""
        return complex_linear(y.transpose(-3, -2).flatten(-2), self.W_z)

    def forward(self, x: Tensor) -> Tensor:
        """x (B, T, 6) -> z (B, T, 6), z_T predicting x_{T+1}. v_t needs x_{t+1}, which the input holds for t < T − 1;
        the last value is never read (look-ahead 1), so it is not formed."""
        k = self.keys(x)
        v = self.values(x[:, 1:])
        return self.output(retrieval(k, k[..., :-1, :], v, lookahead=1, scale=self.beta))

    @torch.no_grad()
    def attention(self, x: Tensor) -> Tensor:
        """Attention weights (B, H, T, T) of every head, read out of ``retrieval`` itself by retrieving one-hot
        values (so plots show exactly what the net computes)."""
        k = self.keys(x)
        T = x.shape[-2]
        eye = torch.eye(T - 1, dtype=x.dtype).expand(*k.shape[:-2], T - 1, T - 1)
        return nn.functional.pad(retrieval(k, k[..., :-1, :], eye, lookahead=1, scale=self.beta), (0, 1))


def clipped_loss(z: Tensor, y: Tensor, clip: float = 0.5) -> Tensor:
    """Mean over positions and coordinates of clip(ẑ − y, ±0.5)²: errors made while the memory is nearly empty are
    large and carry no gradient, so the optimiser does not chase them (Appendix A)."""
    return (z - y).clamp(-clip, clip).square().mean()
