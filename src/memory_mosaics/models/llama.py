"""The llama-architecture baseline of Memory Mosaics v2 (its paper's transformer): RoPE attention, SwiGLU feed-forward
network, RMSNorm, no biases, an untied classifier, and the v2 initialisation (Table 6), so that the two differ in their
memories only. ``split=True`` is the paper's Figure 5 ablation: each block's attention becomes short-window heads
(tokens t-h+1 … t) beside long-range heads (tokens 0 … t-m, m drawn per training step as for v2), mixed by one W_o."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import torch
from torch import Tensor, nn

from memory_mosaics.layers.features import merge_heads, split_heads
from memory_mosaics.layers.mlp import SwiGLU
from memory_mosaics.models.base import LanguageModel, check_doc_token, check_range
from memory_mosaics.models.gpt import CausalSelfAttention, rope
from memory_mosaics.models.mosaic_v2 import LongTermDelay, init_table6
from memory_mosaics.ops.windowed import windowed_retrieval, windowed_retrieval_step
from memory_mosaics.state import AttentionState, LayerState, ModelState


@dataclass
class LlamaConfig:
    """Architecture only; the shape options are those of ``MosaicV2Config``."""

    vocab_size: int = 50304
    block_size: int = 4096  # training context (RoPE reads any length; it extrapolates poorly)
    n_layer: int = 12
    n_head: int = 12
    n_embd: int = 768
    ffn_hidden: int | None = None  # d′ of the SwiGLU (None: 3·n_embd, as the v2 default)
    dropout: float = 0.0
    bias: bool = False
    rope_base: float = 10000.0
    logit_scale: float = 1.0
    split: bool = False  # the Figure 5 ablation: the short/long attention split
    short_window: int = 256  # with split: h, and m at inference / drawn from [min, max] in training
    long_delay: int = 64
    long_delay_min: int = 64
    long_delay_max: int = 256
    doc_token: int | None = None  # the end-of-text token: set, each document is read alone (models.documents)

    def __post_init__(self) -> None:
        check_range(self, ">= 1", ("vocab_size", "block_size", "n_layer", "n_head", "n_embd"))
        if self.n_embd % self.n_head or (self.n_embd // self.n_head) % 2:
            raise ValueError(f"n_embd ({self.n_embd}) must be n_head ({self.n_head}) times an even head size (RoPE)")
        check_range(self, "in [0, 1)", ("dropout",))
        check_range(self, "> 0", ("logit_scale", "rope_base"))
        check_range(self, ">= 1", ("short_window", "long_delay", "long_delay_min", "long_delay_max"))
        if self.long_delay_min > self.long_delay_max:
            raise ValueError(f"long_delay_min ({self.long_delay_min}) exceeds long_delay_max ({self.long_delay_max})")
        check_doc_token(self)

    @property
    def pos(self) -> str:  # what the shared attention layer reads
        return "rope"


@dataclass
class SplitAttentionState(LayerState):
    short: AttentionState = field(default_factory=AttentionState)
    long: AttentionState = field(default_factory=AttentionState)


class SplitAttention(nn.Module):
    """Short-window heads and long-range heads side by side (each group n_head heads of the full width, with RoPE),
    mixed by one projection of 2d -> d: the attention of Figure 5's ablation. A group that sees no token outputs 0."""

    def __init__(self, c: LlamaConfig) -> None:
        super().__init__()
        self.n_head, self.rope_base, self.window = c.n_head, c.rope_base, c.short_window
        self.qkv_short = nn.Linear(c.n_embd, 3 * c.n_embd, bias=c.bias)
        self.qkv_long = nn.Linear(c.n_embd, 3 * c.n_embd, bias=c.bias)
        self.c_proj = nn.Linear(2 * c.n_embd, c.n_embd, bias=c.bias)
        self.resid_dropout = nn.Dropout(c.dropout)
        hs = c.n_embd // c.n_head
        # the bandwidth β(n) = β1·n^α + β0 of the windowed retrieval, fixed at 1/√hs: β0 = 1/√hs, β1 = α = 0
        self.register_buffer("beta0", torch.full((c.n_head,), hs**-0.5), persistent=False)
        self.register_buffer("beta1", torch.zeros(c.n_head), persistent=False)

    def group(self, qkv: nn.Linear, x: Tensor, window: int | None, delay: int, state: AttentionState | None) -> Tensor:
        q, k, v = (split_heads(t, self.n_head) for t in qkv(x).split(x.shape[-1], dim=2))
        offset = 0 if state is None else state.keys.length
        q, k = rope(q, offset, self.rope_base), rope(k, offset, self.rope_base)
        if state is not None:
            state.keys.append(k)
            state.values.append(v)
            k, v = state.keys.data, state.values.data
        fixed = (self.beta0, self.beta1, self.beta1)
        if state is not None and x.shape[1] == 1:
            lo = 0 if window is None else max(0, offset - window + 1)
            hi = max(offset - delay + 1, lo)
            return windowed_retrieval_step(q, k[:, :, lo:hi], v[:, :, lo:hi], *fixed)
        return windowed_retrieval(q, k, v, *fixed, delay, window, q_offset=offset)

    def forward(self, x: Tensor, delay: int, state: SplitAttentionState | None = None) -> Tensor:
        short = self.group(self.qkv_short, x, self.window, 0, None if state is None else state.short)
        long = self.group(self.qkv_long, x, None, delay, None if state is None else state.long)
        return self.resid_dropout(self.c_proj(merge_heads(torch.cat([short, long], dim=-1))))


class LlamaBlock(nn.Module):
    def __init__(self, c: LlamaConfig) -> None:
        super().__init__()
        self.ln_1 = nn.RMSNorm(c.n_embd)
        self.attn: nn.Module = SplitAttention(c) if c.split else CausalSelfAttention(c)  # type: ignore[arg-type]
        self.ln_2 = nn.RMSNorm(c.n_embd)
        self.mlp = SwiGLU(c.n_embd, c.ffn_hidden or 3 * c.n_embd, c.bias, c.dropout)

    def forward(self, x: Tensor, delay: int, state: LayerState | None = None) -> Tensor:
        h = self.ln_1(x)
        x = x + (self.attn(h, delay, state) if isinstance(self.attn, SplitAttention) else self.attn(h, state))
        return x + self.mlp(self.ln_2(x))


class Llama(LongTermDelay, LanguageModel):
    model_type: ClassVar[str] = "llama"
    config_class: ClassVar[type] = LlamaConfig

    def __init__(self, config: LlamaConfig) -> None:
        super().__init__(config)
        self.wte = nn.Embedding(config.vocab_size, config.n_embd)
        self.blocks = nn.ModuleList(LlamaBlock(config) for _ in range(config.n_layer))
        self.ln_f = nn.RMSNorm(config.n_embd)
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        init_table6(self)

    def embed(self, idx: Tensor, position: int) -> Tensor:
        return self.wte(idx)

    def run_blocks(self, x: Tensor, state: ModelState | None) -> Tensor:
        for i, block in enumerate(self.blocks):
            x = block(x, self.delay, None if state is None else state.layers[i])
        return x

    def init_state(self) -> ModelState:
        kind = SplitAttentionState if self.config.split else AttentionState
        return ModelState([kind() for _ in self.blocks], model_type=self.model_type)
