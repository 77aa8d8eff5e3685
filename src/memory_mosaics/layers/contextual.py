"""Contextual memory unit (Figure 1): starts empty for each sequence, stores (k_t, v_t) one step late."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from memory_mosaics.layers.features import KeyExtractor, ValueExtractor, merge_heads
from memory_mosaics.ops.retrieval import retrieval, retrieval_step
from memory_mosaics.state import ContextualState


class ContextualMemory(nn.Module):
    """H contextual memories side by side, followed by the combining layer W_o.

    y_t = Σ_{i ≤ t-s} softmax_i(k_t·k_i) v_i per head (eq. 7): queries are the keys themselves, the value v_i peeks at
    x_{i+1}, and the look-ahead s ≥ 1 keeps v_t (and hence x_{t+1}) out of y_t.
    """

    def __init__(self, n_embd: int, n_head: int, bias: bool = True, dropout: float = 0.0, lookahead: int = 1) -> None:
        super().__init__()
        if n_embd % n_head:
            raise ValueError(f"n_embd ({n_embd}) must be divisible by n_head ({n_head})")
        if lookahead < 1:
            raise ValueError(
                f"lookahead must be >= 1 for a contextual memory with peek-ahead values (got {lookahead}): "
                "v_t contains x_(t+1), so retrieving it at step t would leak the next token"
            )
        self.lookahead = lookahead
        self.key = KeyExtractor(n_embd, n_head, bias)
        self.value = ValueExtractor(n_embd, n_head, bias)
        self.c_proj = nn.Linear(n_embd, n_embd, bias=bias)
        self.attn_dropout = dropout
        self.resid_dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor, state: ContextualState | None = None) -> Tensor:
        """x is (B, T, d). With a state, x continues the sequence the state has seen, and the state is updated."""
        p = self.attn_dropout if self.training else 0.0
        if state is None:
            k, _ = self.key(x)
            y = retrieval(k, k, self.value(x), self.lookahead, dropout_p=p)
        else:
            y = self._stream(x, state, p)
        return self.resid_dropout(self.c_proj(merge_heads(y)))

    def _stream(self, x: Tensor, state: ContextualState, dropout_p: float = 0.0) -> Tensor:
        """Retrieval for x (B, T, d), which continues the sequence ``state`` has seen: store the pairs x completes, then
        retrieve, with the step forms for a single token. Returns y per head, before W_o."""
        offset = state.keys.length
        k, state.leaky = self.key(x, state.leaky, state.cache)
        u = self.value.project(x)
        if state.pending_u is not None:  # x_t completes v_{t-1}: (k_{t-1}, v_{t-1}) joins the memory
            u = torch.cat([state.pending_u, u], dim=2)
        state.values.append(self.value.combine(u[:, :, 1:], u[:, :, :-1], state.cache))
        state.keys.append(k)
        state.pending_u = u[:, :, -1:]
        keys, values = state.keys.data, state.values.data
        if x.shape[1] == 1:
            visible = max(0, state.keys.length - self.lookahead)  # pairs i ≤ t - s
            return retrieval_step(k, keys[:, :, :visible], values[:, :, :visible], dropout_p=dropout_p)
        return retrieval(k, keys, values, self.lookahead, q_offset=offset, dropout_p=dropout_p)
