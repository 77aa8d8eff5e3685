"""Feed-forward networks: GPT-2's (the baseline's, and the Memory Mosaic's persistent-memory ablation), and the SwiGLU
of the llama baseline and of Memory Mosaic v2's persistent memory."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn


class MLP(nn.Module):
    def __init__(self, n_embd: int, bias: bool = True, dropout: float = 0.0, hidden: int | None = None) -> None:
        super().__init__()
        hidden = hidden or 4 * n_embd
        self.c_fc = nn.Linear(n_embd, hidden, bias=bias)
        self.gelu = nn.GELU()
        self.c_proj = nn.Linear(hidden, n_embd, bias=bias)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        return self.dropout(self.c_proj(self.gelu(self.c_fc(x))))


class SwiGLU(nn.Module):
    """W2·(SiLU(W1 x) ⊙ W3 x): Memory Mosaic v2's persistent memory and the llama baseline's feed-forward network."""

    def __init__(self, n_embd: int, hidden: int, bias: bool = False, dropout: float = 0.0) -> None:
        super().__init__()
        self.W1 = nn.Linear(n_embd, hidden, bias=bias)
        self.W3 = nn.Linear(n_embd, hidden, bias=bias)
        self.W2 = nn.Linear(hidden, n_embd, bias=bias)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        return self.dropout(self.W2(F.silu(self.W1(x)) * self.W3(x)))
