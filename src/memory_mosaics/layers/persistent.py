"""Persistent memory unit (Appendix D.1): the same key extractor and retrieval, over a fixed learned bank of pairs."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from memory_mosaics.layers.features import PARAM_GAIN, KeyExtractor, merge_heads
from memory_mosaics.ops.retrieval import bank_retrieval
from memory_mosaics.state import PersistentState


class PersistentMemory(nn.Module):
    """H persistent memories of m slots each, followed by the combining layer W_o.

    y_t = exp(10·o_h) · mean over banks of softmax(k_t · P_kᵀ) P_v. The bank is a parameter (learned at training time,
    fixed at inference), so there is no value extractor. Bank retrieval (``ops.retrieval.bank_retrieval``) never stores
    the (T × m) score matrix for the backward pass.
    """

    def __init__(
        self, n_embd: int, n_head: int, size: int, count: int = 1, bias: bool = True, dropout: float = 0.0
    ) -> None:
        super().__init__()
        if n_embd % n_head:
            raise ValueError(f"n_embd ({n_embd}) must be divisible by n_head ({n_head})")
        if size < 1 or count < 1:
            raise ValueError(f"a persistent memory needs size >= 1 and count >= 1 (got size {size}, count {count})")
        hs = n_embd // n_head
        self.key = KeyExtractor(n_embd, n_head, bias, scale_power=2)
        self.P_k = nn.Parameter(torch.randn(count, n_head, size, hs) / hs**0.5)
        self.P_v = nn.Parameter(torch.randn(count, n_head, size, hs) / hs**0.5)
        self.out_scale = nn.Parameter(torch.full((n_head,), -0.05))
        self.c_proj = nn.Linear(n_embd, n_embd, bias=bias)
        self.resid_dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor, state: PersistentState | None = None) -> Tensor:
        if state is None:
            k, bank = self.key(x)[0], None
        else:
            k, state.leaky = self.key(x, state.leaky, state.cache)
            # streaming: scaling the value bank for every token would cost as much as the retrieval itself
            bank = state.cache.get(self, k.dtype, lambda: self.bank(k.dtype))
        return self.resid_dropout(self.c_proj(merge_heads(self.retrieve(k, bank))))

    def bank(self, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
        """The key bank, and the value bank with the output scale and the mean over banks folded in: they cost less
        there than on the output, (count, H, m, hs) against (B, H, T, hs)."""
        scale = (torch.exp(PARAM_GAIN * self.out_scale) / self.P_k.shape[0]).view(1, -1, 1, 1)
        return self.P_k.to(dtype), (self.P_v * scale).to(dtype)

    def retrieve(self, k: Tensor, bank: tuple[Tensor, Tensor] | None = None) -> Tensor:
        """Bank retrieval for keys (B, H, T, hs): the scaled mean over banks of softmax(k · P_kᵀ) P_v.

        ``bank`` is ``self.bank(k.dtype)``, when the caller keeps it."""
        P_k, P_v = self.bank(k.dtype) if bank is None else bank
        y = None
        for pk, pv in zip(P_k, P_v, strict=True):
            yb = bank_retrieval(k, pk, pv)
            y = yb if y is None else y + yb
        return y
