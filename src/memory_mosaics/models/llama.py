"""The llama-architecture baseline of Memory Mosaics v2 (its paper's transformer): RoPE attention, SwiGLU feed-forward
network, RMSNorm, no biases, an untied classifier, and the v2 initialisation (Table 6), so that the two differ in their
memories only."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from torch import Tensor, nn

from memory_mosaics.layers.mlp import SwiGLU
from memory_mosaics.models.base import LanguageModel, check_range
from memory_mosaics.models.gpt import CausalSelfAttention
from memory_mosaics.models.mosaic_v2 import init_table6
from memory_mosaics.state import AttentionState, ModelState


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

    def __post_init__(self) -> None:
        check_range(self, ">= 1", ("vocab_size", "block_size", "n_layer", "n_head", "n_embd"))
        if self.n_embd % self.n_head or (self.n_embd // self.n_head) % 2:
            raise ValueError(f"n_embd ({self.n_embd}) must be n_head ({self.n_head}) times an even head size (RoPE)")
        check_range(self, "in [0, 1)", ("dropout",))
        check_range(self, "> 0", ("logit_scale", "rope_base"))

    @property
    def pos(self) -> str:  # what the shared attention layer reads
        return "rope"


class LlamaBlock(nn.Module):
    def __init__(self, c: LlamaConfig) -> None:
        super().__init__()
        self.ln_1 = nn.RMSNorm(c.n_embd)
        self.attn = CausalSelfAttention(c)  # type: ignore[arg-type]
        self.ln_2 = nn.RMSNorm(c.n_embd)
        self.mlp = SwiGLU(c.n_embd, c.ffn_hidden or 3 * c.n_embd, c.bias, c.dropout)

    def forward(self, x: Tensor, state: AttentionState | None = None) -> Tensor:
        x = x + self.attn(self.ln_1(x), state)
        return x + self.mlp(self.ln_2(x))


class Llama(LanguageModel):
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

    def init_state(self) -> ModelState:
        return ModelState([AttentionState() for _ in self.blocks], model_type=self.model_type)
