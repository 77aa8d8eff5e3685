"""The Memory Mosaic language model (Figure 6, right): no position encoding, tied embeddings."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor, nn

from memory_mosaics.layers.block import PERSISTENT_KINDS, MosaicBlock, MosaicBlockState
from memory_mosaics.models.base import LanguageModel, check_common
from memory_mosaics.state import ModelState


@dataclass
class MosaicConfig:
    """Architecture only. Defaults are the paper's GPT-2-small shape."""

    vocab_size: int = 50304
    block_size: int = 512  # training context; not a limit: the model has no positions and streams past it
    n_layer: int = 12
    n_head: int = 12  # N_c = N_p: contextual and persistent memory units per block
    n_embd: int = 768
    pmem_size: int | None = None  # slots per persistent memory; None = 3.5·n_embd (GPT-2 weight count per block)
    pmem_count: int = 1  # banks per persistent memory, averaged
    persistent: str = "memory"  # "memory" (paper), "mlp" (GPT-2 MLP, ablation) or "none" (contextual only)
    lookahead: int = 1  # retrieval excludes pairs i > t - lookahead; values peek one step, so it must be >= 1
    dropout: float = 0.0
    bias: bool = True
    logit_scale: float = 1.0  # logits = scale · h·Eᵀ; the authors' Library model uses 1/sqrt(n_embd)
    init: str = "gpt2"  # "gpt2" (normal 0.02) or "library" (the authors' Library: fan-in scaled, see LanguageModel)
    doc_token: int | None = None  # the end-of-text token: set, each document is read alone (models.documents)

    def __post_init__(self) -> None:
        if self.pmem_size is None:
            self.pmem_size = round(3.5 * self.n_embd)
        check_common(self)
        if self.lookahead < 1:
            raise ValueError(
                f"lookahead must be >= 1 (got {self.lookahead}): values peek at the next token, so a memory must not "
                "retrieve the pair stored at the current step"
            )
        if self.persistent not in PERSISTENT_KINDS:
            raise ValueError(f"persistent must be one of {PERSISTENT_KINDS}, got {self.persistent!r}")
        if self.pmem_size < 1 or self.pmem_count < 1:
            raise ValueError(f"pmem_size and pmem_count must be >= 1 (got {self.pmem_size}, {self.pmem_count})")


class MemoryMosaic(LanguageModel):
    model_type = "mosaic"
    config_class = MosaicConfig

    def __init__(self, config: MosaicConfig) -> None:
        super().__init__(config)
        self.wte = nn.Embedding(config.vocab_size, config.n_embd)
        self.drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(
            MosaicBlock(
                config.n_embd,
                config.n_head,
                config.pmem_size,
                config.pmem_count,
                config.persistent,
                config.lookahead,
                config.bias,
                config.dropout,
            )
            for _ in range(config.n_layer)
        )
        self.ln_f = nn.LayerNorm(config.n_embd, bias=config.bias)
        self._tie_and_init()

    def embed(self, idx: Tensor, position: int) -> Tensor:
        return self.drop(self.wte(idx))  # no position encoding

    def init_state(self) -> ModelState:
        return ModelState([MosaicBlockState() for _ in self.blocks], model_type=self.model_type)

    def _extra_flops_per_token(self, seq_len: int) -> int:
        # each leaky average is a scan of about 4 FLOPs per element (step and carry), forward and backward alike, and
        # the β-gradient's dot products add 4 more: about 12·d per token for each of the two key extractors of a block
        return 2 * 12 * self.config.n_layer * self.config.n_embd
