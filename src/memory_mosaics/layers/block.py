"""A Memory Mosaic block (Figure 6, right): x += contextual(LN(x)); x += persistent(LN(x))."""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import Tensor, nn

from memory_mosaics.layers.contextual import ContextualMemory
from memory_mosaics.layers.mlp import MLP
from memory_mosaics.layers.persistent import PersistentMemory
from memory_mosaics.state import ContextualState, LayerState, PersistentState

PERSISTENT_KINDS = ("memory", "mlp", "none")


@dataclass
class MosaicBlockState(LayerState):
    contextual: ContextualState = field(default_factory=ContextualState)
    persistent: PersistentState = field(default_factory=PersistentState)


class MosaicBlock(nn.Module):
    """The sub-layers are named after the paper: ``contextual`` (the contextual memories) and ``persistent``, which the
    argument of that name chooses: persistent memories (the paper), a GPT-2 MLP (the reviewers' ablation), or nothing
    (a contextual-memory-only block, as in the induction-head experiment of Section 3). Weights saved under the names of
    version 0.1 (``attn``, ``mlp``) load through ``models.legacy``."""

    def __init__(
        self,
        n_embd: int,
        n_head: int,
        pmem_size: int,
        pmem_count: int = 1,
        persistent: str = "memory",
        lookahead: int = 1,
        bias: bool = True,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if persistent not in PERSISTENT_KINDS:
            raise ValueError(f"persistent must be one of {PERSISTENT_KINDS}, got {persistent!r}")
        self.ln_1 = nn.LayerNorm(n_embd, bias=bias)
        self.contextual = ContextualMemory(n_embd, n_head, bias, dropout, lookahead)
        self.ln_2: nn.Module | None = None
        self.persistent: nn.Module | None = None
        if persistent != "none":
            self.ln_2 = nn.LayerNorm(n_embd, bias=bias)
            self.persistent = (
                PersistentMemory(n_embd, n_head, pmem_size, pmem_count, bias, dropout)
                if persistent == "memory"
                else MLP(n_embd, bias, dropout)
            )

    def forward(self, x: Tensor, state: MosaicBlockState | None = None) -> Tensor:
        x = x + self.contextual(self.ln_1(x), None if state is None else state.contextual)
        if isinstance(self.persistent, PersistentMemory):  # its key extractor streams a leaky state
            x = x + self.persistent(self.ln_2(x), None if state is None else state.persistent)
        elif self.persistent is not None:  # an MLP holds no state
            x = x + self.persistent(self.ln_2(x))
        return x
