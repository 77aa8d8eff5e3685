"""The GPT-2 baseline (Figure 6, left), with learned, rotary (RoPE), ALiBi or no position encoding."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from memory_mosaics.layers.features import merge_heads, split_heads
from memory_mosaics.layers.mlp import MLP
from memory_mosaics.models.base import LanguageModel, check_common
from memory_mosaics.ops.retrieval import retrieval, retrieval_step
from memory_mosaics.state import AttentionState, ModelState

POSITION_ENCODINGS = ("learned", "rope", "alibi", "none")


@dataclass
class GPTConfig:
    """Architecture only. Defaults are GPT-2 small."""

    vocab_size: int = 50304
    block_size: int = 512  # training context; the limit of learned positions
    n_layer: int = 12
    n_head: int = 12
    n_embd: int = 768
    dropout: float = 0.0
    bias: bool = True
    logit_scale: float = 1.0  # logits = scale · h·Eᵀ; the authors' Library model uses 1/sqrt(n_embd)
    init: str = "gpt2"  # "gpt2" (normal 0.02) or "library" (the authors' Library: fan-in scaled, see LanguageModel)
    pos: str = "learned"  # learned | rope | alibi | none
    rope_base: float = 10000.0
    doc_token: int | None = None  # the end-of-text token: set, each document is read alone (models.documents)

    def __post_init__(self) -> None:
        check_common(self)
        if self.pos not in POSITION_ENCODINGS:
            raise ValueError(f"pos must be one of {POSITION_ENCODINGS}, got {self.pos!r}")
        if self.pos == "rope" and (self.n_embd // self.n_head) % 2:
            raise ValueError(f"rope needs an even head size, got {self.n_embd // self.n_head}")


def rope(x: Tensor, offset: int, base: float) -> Tensor:
    """Rotary position encoding of (B, H, T, hs) at positions offset .. offset+T-1 (rotate-half convention)."""
    hs, T = x.shape[-1], x.shape[-2]
    inv_freq = base ** (-torch.arange(0, hs, 2, device=x.device, dtype=torch.float32) / hs)
    angles = torch.arange(offset, offset + T, device=x.device, dtype=torch.float32)[:, None] * inv_freq
    cos, sin = angles.cos().to(x.dtype), angles.sin().to(x.dtype)
    x1, x2 = x[..., : hs // 2], x[..., hs // 2 :]
    return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)


def alibi_slopes(n_head: int) -> Tensor:
    """Press et al. (2022): geometric slopes 2^(-8/n), 2^(-16/n), ... (interleaved when n is not a power of two)."""

    def power_of_two(n: int) -> list[float]:
        start = 2 ** (-8 / n)
        return [start ** (i + 1) for i in range(n)]

    if math.log2(n_head).is_integer():
        return torch.tensor(power_of_two(n_head))
    closest = 2 ** math.floor(math.log2(n_head))
    return torch.tensor(power_of_two(closest) + power_of_two(2 * closest)[0::2][: n_head - closest])


class CausalSelfAttention(nn.Module):
    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.n_head, self.pos, self.rope_base = config.n_head, config.pos, config.rope_base
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd, bias=config.bias)
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.attn_dropout = config.dropout
        self.resid_dropout = nn.Dropout(config.dropout)
        if self.pos == "alibi":
            self.register_buffer("slopes", alibi_slopes(config.n_head), persistent=False)

    def forward(self, x: Tensor, state: AttentionState | None = None) -> Tensor:
        q, k, v = (split_heads(t, self.n_head) for t in self.c_attn(x).split(x.shape[-1], dim=2))
        offset = 0 if state is None else state.keys.length
        if self.pos == "rope":
            q, k = rope(q, offset, self.rope_base), rope(k, offset, self.rope_base)
        if state is not None:
            state.keys.append(k)
            state.values.append(v)
            k, v = state.keys.data, state.values.data
        bias = None
        if self.pos == "alibi":  # -slope_h · (t - i); the causal mask is added by retrieval
            t = torch.arange(offset, offset + q.shape[2], device=x.device)
            i = torch.arange(k.shape[2], device=x.device)
            bias = -(self.slopes.view(-1, 1, 1) * (t[:, None] - i[None, :])).to(q.dtype)
        p, scale = self.attn_dropout if self.training else 0.0, 1 / math.sqrt(q.shape[-1])
        if state is not None and q.shape[2] == 1:  # a streamed token sees the whole cache, its own pair included
            y = retrieval_step(q, k, v, scale=scale, dropout_p=p, bias=bias)
        else:
            y = retrieval(q, k, v, lookahead=0, scale=scale, q_offset=offset, dropout_p=p, bias=bias)
        return self.resid_dropout(self.c_proj(merge_heads(y)))


class Block(nn.Module):
    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.mlp = MLP(config.n_embd, config.bias, config.dropout)

    def forward(self, x: Tensor, state: AttentionState | None = None) -> Tensor:
        x = x + self.attn(self.ln_1(x), state)
        return x + self.mlp(self.ln_2(x))


class GPT(LanguageModel):
    model_type = "gpt"
    config_class = GPTConfig

    def __init__(self, config: GPTConfig) -> None:
        super().__init__(config)
        self.wte = nn.Embedding(config.vocab_size, config.n_embd)
        if config.pos == "learned":
            self.wpe = nn.Embedding(config.block_size, config.n_embd)
            self.position_params = ("wpe.weight",)
        self.drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.n_layer))
        self.ln_f = nn.LayerNorm(config.n_embd, bias=config.bias)
        self._tie_and_init()

    @property
    def max_context(self) -> int | None:
        return self.config.block_size if self.config.pos == "learned" else None

    def embed(self, idx: Tensor, position: int) -> Tensor:
        x = self.wte(idx)
        if self.config.pos == "learned":
            x = x + self.wpe(torch.arange(position, position + idx.shape[1], device=idx.device))
        return self.drop(x)

    def init_state(self) -> ModelState:
        return ModelState([AttentionState() for _ in self.blocks], model_type=self.model_type)
