"""Memory Mosaic v2 ("Memory Mosaics at scale", Zhang & Bottou, NeurIPS 2025), as restated in the v2 spec.

Each block: a short-term and a long-term contextual memory side by side (each with its own gated key extractor, value
extractor and adaptive bandwidth), one projection W_o of their concatenated heads, then a SwiGLU persistent memory
(v1's bank as an option); pre-norm residual blocks with RMSNorm, no position encoding. The long-term memory sees pairs
0 … t-m: training draws m once per optimiser step (``sample_delay``), evaluation uses ``long_delay``.

Streaming (a ``WindowedState`` per memory: the gated-key state, the stored pairs, the pending value) equals the full
forward; a short-term memory keeps only the pairs its window can still reach, so its work and memory per token are
flat in the sequence length.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from memory_mosaics.layers.features import ValueExtractor, merge_heads, split_heads
from memory_mosaics.layers.mlp import SwiGLU
from memory_mosaics.layers.persistent import PersistentMemory
from memory_mosaics.models.base import LanguageModel, check_doc_token, check_range
from memory_mosaics.ops.gated import gated_keys, gated_keys_step
from memory_mosaics.ops.windowed import windowed_retrieval, windowed_retrieval_step
from memory_mosaics.state import LayerState, ModelState, PersistentState, WindowedState

PERSISTENT_V2 = ("swiglu", "memory")
MAX_LOG_BANDWIDTH = 10.0  # β0 = exp(min(θ0, 10)), β1 = exp(min(θ1, 10)) (paper, Table 6)
MAX_LOG_VALUE_SCALE = 15.0  # α_ψ = exp(min(|θ|, 15))


@dataclass
class MosaicV2Config:
    """Architecture only. Defaults are the paper's (h = 256, m ∈ [64, 256], m = 64 at inference, d′ = 3d)."""

    vocab_size: int = 50304
    block_size: int = 4096  # training context (no position encoding: the model reads any length)
    n_layer: int = 12
    n_head: int = 12  # heads of each of the two contextual memories
    n_embd: int = 768
    short_window: int = 256  # h: the short-term memory sees pairs t-h+1 … t-1
    long_delay: int = 64  # m at inference: the long-term memory sees pairs 0 … t-m
    long_delay_min: int = 64  # training draws m uniformly from [long_delay_min, long_delay_max]
    long_delay_max: int = 256
    persistent: str = "swiglu"  # or "memory": v1's persistent memory bank
    ffn_hidden: int | None = None  # d′ of the SwiGLU (None: 3·n_embd)
    pmem_size: int | None = None  # slots of the "memory" option (None: 3.5·n_embd)
    dropout: float = 0.0
    bias: bool = False
    logit_scale: float = 1.0
    doc_token: int | None = None  # the end-of-text token: set, each document is read alone (models.documents)

    def __post_init__(self) -> None:
        check_range(self, ">= 1", ("vocab_size", "block_size", "n_layer", "n_head", "n_embd", "long_delay"))
        check_range(self, ">= 1", ("long_delay_min", "long_delay_max"))
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head})")
        if self.short_window < 2:
            raise ValueError(f"short_window must be >= 2 (pairs t-h+1 … t-1), got {self.short_window}")
        if self.long_delay_min > self.long_delay_max:
            raise ValueError(f"long_delay_min ({self.long_delay_min}) exceeds long_delay_max ({self.long_delay_max})")
        if self.persistent not in PERSISTENT_V2:
            raise ValueError(f"persistent must be one of {PERSISTENT_V2}, got {self.persistent!r}")
        check_range(self, "in [0, 1)", ("dropout",))
        check_range(self, "> 0", ("logit_scale",))
        check_doc_token(self)


class GatedKeyExtractor(nn.Module):
    """φ of v2 (eq. 8): k̄_t = exp(W_g x_t)·W_φ x_t + exp(-|W_λ x_t|)·k̄_{t-1}, k_t = Norm(k̄_t). W_g and W_λ give one
    scalar per head; their biases let a constant gate and a constant decay be learned (v1's leaky average is the case
    W_g = W_λ = 0 with the decay in the bias)."""

    def __init__(self, n_embd: int, n_head: int, bias: bool = False) -> None:
        super().__init__()
        self.n_head = n_head
        self.W_phi = nn.Linear(n_embd, n_embd, bias=bias)
        self.W_g = nn.Linear(n_embd, n_head)
        self.W_lambda = nn.Linear(n_embd, n_head)

    def forward(self, x: Tensor, state: WindowedState | None = None, proj: tuple[Tensor, ...] | None = None) -> Tensor:
        """Keys (B, H, T, hs); with a state, x continues its sequence and the gated-key state is updated. ``proj``:
        W_φ x, W_g x and W_λ x computed already (the block fuses the projections of its memories into one matmul)."""
        k, a, b = (self.W_phi(x), self.W_g(x), self.W_lambda(x)) if proj is None else proj
        k, a, b = split_heads(k, self.n_head), a.transpose(1, 2), b.transpose(1, 2)  # (B, H, T, hs), (B, H, T)
        carried = None if state is None or state.key_u is None else (state.key_u, state.key_s)
        if state is not None and x.shape[1] == 1:
            keys, (u, s) = gated_keys_step(k[:, :, 0], a[:, :, 0], b[:, :, 0], carried)
            keys = keys.unsqueeze(2)
        else:
            keys, (u, s) = gated_keys(k, a, b, carried)
        if state is not None:
            state.key_u, state.key_s = u, s
        return keys


class ValueExtractorV2(ValueExtractor):
    """ψ of v2 (eq. 9), v1's peek-ahead values with the scale α_ψ = exp(min(|θ|, 15)), θ = 0 at initialisation."""

    def __init__(self, n_embd: int, n_head: int, bias: bool = False) -> None:
        super().__init__(n_embd, n_head, bias)
        nn.init.zeros_(self.val_scale)

    @property
    def log_scale(self) -> Tensor:
        return self.val_scale.abs().clamp(max=MAX_LOG_VALUE_SCALE)


class WindowedMemory(nn.Module):
    """One v2 contextual memory (short- or long-term): keys, values, adaptive bandwidth β(n) = β1·n^α + β0 per head
    (β0 = exp(min(θ0, 10)), β1 = exp(min(θ1, 10)), α = min(|θα|, 1); θ0 = θ1 = 1.5 and θα = 1/3 at initialisation).
    Returns y per head (B, H, T, hs), before W_o."""

    def __init__(self, n_embd: int, n_head: int, bias: bool = False, window: int | None = None) -> None:
        super().__init__()
        self.window = window
        self.key = GatedKeyExtractor(n_embd, n_head, bias)
        self.value = ValueExtractorV2(n_embd, n_head, bias)
        self.theta0 = nn.Parameter(torch.full((n_head,), 1.5))
        self.theta1 = nn.Parameter(torch.full((n_head,), 1.5))
        self.theta_alpha = nn.Parameter(torch.full((n_head,), 1 / 3))

    def bandwidth_parameters(self) -> tuple[Tensor, Tensor, Tensor]:
        """(β0, β1, α) per head."""
        return (
            self.theta0.clamp(max=MAX_LOG_BANDWIDTH).exp(),
            self.theta1.clamp(max=MAX_LOG_BANDWIDTH).exp(),
            self.theta_alpha.abs().clamp(max=1.0),
        )

    def projections(self) -> list[nn.Linear]:
        """The linear maps of x this memory reads: W_φ, W_g, W_λ, W_ψ."""
        return [self.key.W_phi, self.key.W_g, self.key.W_lambda, self.value.W_v]

    def forward(
        self, x: Tensor, delay: int = 1, state: WindowedState | None = None, proj: tuple[Tensor, ...] | None = None
    ) -> Tensor:
        """``proj`` (streaming): the outputs of ``projections()`` for x, computed already."""
        if state is None:
            k = self.key(x)
            return windowed_retrieval(k, k, self.value(x), *self.bandwidth_parameters(), delay, self.window)
        return self._stream(x, delay, state, proj)

    def _stream(self, x: Tensor, delay: int, state: WindowedState, proj: tuple[Tensor, ...] | None) -> Tensor:
        """x continues the sequence ``state`` has seen: store the pairs it completes, then retrieve (the step forms
        for one token). Only the pairs a later query can still see are kept by a short-term memory."""
        start = state.seen  # absolute position of x[0]
        k = self.key(x, state, None if proj is None else proj[:3])
        u = self.value.project(x) if proj is None else split_heads(proj[3], self.value.n_head)
        if state.pending_u is not None:  # x_t completes v_{t-1}
            u = torch.cat([state.pending_u, u], dim=2)
        state.values.append(self.value.combine(u[:, :, 1:], u[:, :, :-1], state.cache))
        state.keys.append(k)
        state.pending_u = u[:, :, -1:]
        keys, values = state.keys.data[:, :, : state.values.length], state.values.data
        params = state.cache.get(self, x.dtype, self.bandwidth_parameters)  # per token: derived once while streaming
        last = start + x.shape[1] - 1
        if x.shape[1] == 1:
            lo = 0 if self.window is None else max(0, last - self.window + 1)
            hi = max(last - delay + 1, lo)  # pairs lo … hi-1, absolute
            y = windowed_retrieval_step(k, keys[:, :, lo - state.first : hi - state.first],
                                        values[:, :, lo - state.first : hi - state.first], *params)  # fmt: skip
        else:
            y = windowed_retrieval(k, keys, values, *params, delay, self.window, q_offset=start, k_offset=state.first)
        if self.window is not None:
            state.drop_before(max(0, last - self.window + 2))  # the oldest pair the next query can see
        return y


def init_table6(model: LanguageModel) -> None:
    """The v2 paper's initialisation (its Table 6), also given to the llama baseline: truncated normal (±3σ) with
    σ = 1/√(2d(l+1)) for every matrix of block l that reads the d-wide stream (W_φ, W_g, W_λ, W_ψ, W_o, W1, W3, and
    the baseline's attention), 1/√(2d′(l+1)) for W2 (which reads the d′-wide hidden layer), 1/√(2d) for the
    embedding and the classifier; biases 0."""
    d = model.config.n_embd

    def normal(w: Tensor, std: float) -> None:
        nn.init.trunc_normal_(w, std=std, a=-3 * std, b=3 * std)

    for layer, block in enumerate(model.blocks):
        for name, module in block.named_modules():
            if isinstance(module, nn.Linear):
                fan = module.in_features if name.endswith("W2") else d
                normal(module.weight, 1 / math.sqrt(2 * fan * (layer + 1)))
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
    normal(model.wte.weight, 1 / math.sqrt(2 * d))
    normal(model.lm_head.weight, 1 / math.sqrt(2 * d))


@dataclass
class MosaicV2BlockState(LayerState):
    short_term: WindowedState = field(default_factory=WindowedState)
    long_term: WindowedState = field(default_factory=WindowedState)
    persistent: PersistentState = field(default_factory=PersistentState)


class MosaicV2Block(nn.Module):
    def __init__(self, c: MosaicV2Config) -> None:
        super().__init__()
        self.ln_1 = nn.RMSNorm(c.n_embd)
        self.short_term = WindowedMemory(c.n_embd, c.n_head, c.bias, window=c.short_window)
        self.long_term = WindowedMemory(c.n_embd, c.n_head, c.bias)
        self.W_o = nn.Linear(2 * c.n_embd, c.n_embd, bias=c.bias)
        self.resid_dropout = nn.Dropout(c.dropout)
        self.ln_2 = nn.RMSNorm(c.n_embd)
        if c.persistent == "swiglu":
            self.persistent: nn.Module = SwiGLU(c.n_embd, c.ffn_hidden or 3 * c.n_embd, c.bias, c.dropout)
        else:
            pmem = c.pmem_size or int(3.5 * c.n_embd)
            self.persistent = PersistentMemory(c.n_embd, c.n_head, pmem, 1, c.bias, c.dropout)

    def _projections(self, h: Tensor, long_term: bool, state: MosaicV2BlockState) -> list[tuple[Tensor, ...]]:
        """For a streamed chunk: W_φ h, W_g h, W_λ h and W_ψ h of each memory run, in one matmul, so a streamed token
        dispatches one linear instead of eight (at batch 1 on a CPU, dispatch costs as much as compute). The joined
        weight is kept in a ParamCache, under the last memory's key extractor (a module no other entry uses).
        Training does not join them: the views of one joined output would keep it all alive for the backward
        (6 % more peak memory at the throughput benchmark's shape, results/README.md), for no measurable speed."""
        memories = [self.short_term, self.long_term] if long_term else [self.short_term]
        linears = [lin for m in memories for lin in m.projections()]

        def joined() -> tuple[Tensor, Tensor]:
            bias = [lin.weight.new_zeros(lin.out_features) if lin.bias is None else lin.bias for lin in linears]
            return torch.cat([lin.weight for lin in linears]), torch.cat(bias)

        params = [p for lin in linears for p in lin.parameters()]
        weight, bias = state.short_term.cache.get(memories[-1].key, h.dtype, joined, params)
        out = F.linear(h, weight, bias).split([lin.out_features for lin in linears], dim=-1)
        return [out[4 * i : 4 * i + 4] for i in range(len(memories))]

    def forward(self, x: Tensor, delay: int, long_term: bool = True, state: MosaicV2BlockState | None = None) -> Tensor:
        """``long_term`` False removes the long-term memory (the paper's Table 2 ablation): W_o reads 0 there."""
        h = self.ln_1(x)
        proj = [None, None] if state is None else self._projections(h, long_term, state)
        short = self.short_term(h, 1, None if state is None else state.short_term, proj[0])
        # switched off, the long-term memory is not run at all (a state streamed so keeps an empty long-term memory)
        long = (
            self.long_term(h, delay, None if state is None else state.long_term, proj[1])
            if long_term
            else torch.zeros_like(short)
        )
        x = x + self.resid_dropout(self.W_o(merge_heads(torch.cat([short, long], dim=-1))))
        if isinstance(self.persistent, PersistentMemory):  # its key extractor streams a leaky state
            return x + self.persistent(self.ln_2(x), None if state is None else state.persistent)
        return x + self.persistent(self.ln_2(x))


class LongTermDelay:
    """The long-term delay m of a model whose config has long_delay (m at inference) and long_delay_min/max: drawn once
    per optimiser step in training (``sample_delay``, which the training engine calls), fixed otherwise."""

    config: MosaicV2Config
    training: bool
    train_delay: int | None = None  # m of the current optimiser step

    def sample_delay(self, generator: torch.Generator | None = None) -> int:
        """Draw the long-term delay m of one optimiser step, uniform in [long_delay_min, long_delay_max]."""
        c = self.config
        self.train_delay = int(torch.randint(c.long_delay_min, c.long_delay_max + 1, (1,), generator=generator))
        return self.train_delay

    @property
    def delay(self) -> int:
        """m for this forward: the drawn one in training (if drawn), ``long_delay`` otherwise."""
        return self.train_delay if self.training and self.train_delay is not None else self.config.long_delay


class MemoryMosaicV2(LongTermDelay, LanguageModel):
    model_type: ClassVar[str] = "mosaic2"
    config_class: ClassVar[type] = MosaicV2Config

    def __init__(self, config: MosaicV2Config) -> None:
        super().__init__(config)
        self.wte = nn.Embedding(config.vocab_size, config.n_embd)
        self.blocks = nn.ModuleList(MosaicV2Block(config) for _ in range(config.n_layer))
        self.ln_f = nn.RMSNorm(config.n_embd)
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)  # not tied (as the paper's llama)
        self.use_long_term = True  # False: the Table 2 ablation, the long-term memory removed at inference
        init_table6(self)

    def embed(self, idx: Tensor, position: int) -> Tensor:
        return self.wte(idx)

    def run_blocks(self, x: Tensor, state: ModelState | None) -> Tensor:
        for i, block in enumerate(self.blocks):
            x = block(x, self.delay, self.use_long_term, None if state is None else state.layers[i])
        return x

    def init_state(self) -> ModelState:
        return ModelState([MosaicV2BlockState() for _ in self.blocks], model_type=self.model_type)

    def flops_per_token(self, seq_len: int | None = None) -> int:
        """Training FLOPs per token: 6 per matmul weight, plus 12·d per pair retrieved in each of the two memories
        (the short-term one sees at most h - 1 pairs, the long-term one about T/2 - m on average)."""
        c = self.config
        T = seq_len or c.block_size
        n_matmul = self.num_params(non_embedding=True)
        short = min(c.short_window - 1, T / 2)
        long = max(T / 2 - c.long_delay, 0)
        return int(6 * n_matmul + 12 * c.n_layer * c.n_embd * (short + long))
