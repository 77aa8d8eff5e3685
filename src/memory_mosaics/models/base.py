"""What the Memory Mosaic and the GPT baseline share: the language-model forward, initialisation, streaming state,
accounting and optimiser groups (their files: ``memory_mosaics.checkpoints``)."""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from memory_mosaics.models.documents import document_groups, document_starts
from memory_mosaics.state import ModelState

VOCAB_PADDING = 128  # embeddings are often padded to a multiple of 64 or 128 (GPT-2: 50257 -> 50304)
INITS = ("gpt2", "library")


class LanguageModel(nn.Module):
    """Token embedding, a stack of blocks, final LayerNorm, and an output head tied to the embedding.

    Subclasses build ``self.wte``, ``self.blocks``, ``self.ln_f`` and implement ``embed`` and ``init_state``.
    """

    model_type: ClassVar[str]
    config_class: ClassVar[type]
    #: parameters counted as position encoding (excluded from the non-embedding count and from FLOPs)
    position_params: ClassVar[tuple[str, ...]] = ()

    def __init__(self, config: Any) -> None:
        super().__init__()
        self.config = config

    def _tie_and_init(self) -> None:
        self.lm_head = nn.Linear(self.config.n_embd, self.config.vocab_size, bias=False)
        self.lm_head.weight = self.wte.weight  # tied embeddings
        L = self.config.n_layer
        if self.config.init == "gpt2":
            self.apply(self._init_weights)
            for name, p in self.named_parameters():  # GPT-2: residual projections scaled by 1/sqrt(2L)
                if name.endswith("c_proj.weight"):
                    nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * L))
            return
        # "library": the authors' Memory Mosaics Library (their RegBench and BabiStories models): fan-in scaled
        # weights, residual projections further by 1/sqrt(L). Their tied embedding ends up with the head's N(0, 1/d)
        # (their init visits the head last); learned positions (GPT only, absent from their code) take the same scale.
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, mean=0.0, std=module.weight.shape[1] ** -0.5)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Embedding):
                nn.init.normal_(module.weight, mean=0.0, std=self.config.n_embd**-0.5)
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight"):
                nn.init.normal_(p, mean=0.0, std=(p.shape[1] * L) ** -0.5)
        # drawn once more, last: the same distribution, kept so that seeded runs (results/regbench/glue) reproduce
        nn.init.normal_(self.wte.weight, mean=0.0, std=self.config.n_embd**-0.5)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    # ---- forward -------------------------------------------------------------------------------------------------
    def embed(self, idx: Tensor, position: int) -> Tensor:
        raise NotImplementedError

    def run_blocks(self, x: Tensor, state: ModelState | None) -> Tensor:
        """The stack of blocks, each with its layer's state when streaming."""
        for i, block in enumerate(self.blocks):
            x = block(x, None if state is None else state.layers[i])
        return x

    def init_state(self) -> ModelState:
        """A fresh streaming state (an empty memory); pass it to ``forward`` to prefill and then step."""
        raise NotImplementedError

    @property
    def max_context(self) -> int | None:
        """The longest sequence the model can read (None: unbounded)."""
        return None

    def forward(
        self, idx: Tensor, targets: Tensor | None = None, state: ModelState | None = None
    ) -> tuple[Tensor, Tensor | None]:
        """Logits (B, T, V) and, with ``targets`` (B, T; -1 = ignore), the mean cross-entropy.

        With a ``state``, ``idx`` continues the sequence the state has seen (a prompt chunk or a single token) and the
        state is updated in place; the logits equal those of one forward over the whole sequence. A config with
        ``doc_token`` reads each document alone (``models.documents``).
        """
        if idx.dim() != 2 or idx.shape[1] == 0:
            raise ValueError(f"idx must be (batch, time) token ids with time >= 1, got shape {tuple(idx.shape)}")
        doc_token = getattr(self.config, "doc_token", None)
        if doc_token is None:
            logits = self._logits(idx, state)
        elif state is None:
            logits = self._document_logits(idx, doc_token)
        else:
            logits = self._stream_documents(idx, doc_token, state)
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.float().view(-1, logits.size(-1)), targets.reshape(-1), ignore_index=-1)
        return logits, loss

    def _logits(self, idx: Tensor, state: ModelState | None) -> Tensor:
        position = 0
        if state is not None:
            state.check(self.model_type, len(self.blocks), idx.shape[0])
            position = state.position
        if self.max_context is not None and position + idx.shape[1] > self.max_context:
            raise ValueError(
                f"sequence of {position + idx.shape[1]} tokens is longer than this model's {self.max_context} "
                "learned positions; use rope, alibi or none positions (or a Memory Mosaic) to go further"
            )
        x = self.run_blocks(self.embed(idx, position), state)
        logits = self.lm_head(self.ln_f(x))
        if self.config.logit_scale != 1.0:
            logits = logits * self.config.logit_scale
        if state is not None:
            state.position += idx.shape[1]
        return logits

    def _document_logits(self, idx: Tensor, doc_token: int) -> Tensor:
        """The logits of every document of idx read alone: its documents as a batch, by groups of similar length."""
        flat = idx.flatten()
        parts, where = [], []
        for index, valid in document_groups(idx, doc_token):
            parts.append(self._logits(flat[index], None)[valid])
            where.append(index[valid])
        return torch.cat(parts)[torch.cat(where).argsort()].view(*idx.shape, -1)

    def _stream_documents(self, idx: Tensor, doc_token: int, state: ModelState) -> Tensor:
        """Streaming with document-wise masking: the state starts afresh where a document starts. Rows must end
        their documents at the same positions (one state cannot forget one row's memory alone)."""
        ends = idx == doc_token
        if idx.shape[0] > 1 and not bool((ends == ends[:1]).all()):
            raise ValueError(
                f"this model reads each document alone (doc_token {doc_token}): streamed rows must end their "
                "documents at the same positions; stream the rows one at a time"
            )
        starts = document_starts(idx[:1], doc_token, after_end=state.document_ended)[0]
        cuts = [0, *(starts[1:].nonzero().squeeze(1) + 1).tolist(), idx.shape[1]]
        out = []
        for a, b in itertools.pairwise(cuts):
            if bool(starts[a]) and state.position > 0:
                state.restart(self.init_state())
            out.append(self._logits(idx[:, a:b], state))
        state.document_ended = bool(ends[0, -1])
        return torch.cat(out, dim=1)

    # ---- accounting ----------------------------------------------------------------------------------------------
    def num_params(self, non_embedding: bool = True) -> int:
        """Parameter count; ``non_embedding`` drops the token and position embeddings (the tied head is not double
        counted; an untied head, as llama's and v2's, stays: it is a weight of the body's last matmul, as in FLOP
        counts). Sizes matched across tied and untied models use ``models.sizes.body_params``, which drops both."""
        n = sum(p.numel() for p in self.parameters())
        if non_embedding:
            n -= self.wte.weight.numel() + sum(self.get_parameter(name).numel() for name in self.position_params)
        return n

    def flops_per_token(self, seq_len: int | None = None) -> int:
        """Training FLOPs per token (forward + backward), PaLM-style: 6 per weight used in a matmul, plus attention
        (12·L·d·T for scores and weighted sums over a context of T) and what the subclass adds."""
        T = seq_len or self.config.block_size
        c = self.config
        n_matmul = self.num_params(non_embedding=True) + self.wte.weight.numel()  # the head is a matmul
        return 6 * n_matmul + 12 * c.n_layer * c.n_embd * T + self._extra_flops_per_token(T)

    def _extra_flops_per_token(self, seq_len: int) -> int:
        return 0

    # ---- optimisation --------------------------------------------------------------------------------------------
    def configure_optimizers(
        self, weight_decay: float, learning_rate: float, betas: tuple[float, float] = (0.9, 0.95), fused: bool = False
    ) -> torch.optim.AdamW:
        """AdamW with the usual decay groups: matrices, embeddings and memory banks decay; biases, LayerNorm weights
        and the per-head scalars (leaky rates, scales, peek coefficients) do not."""
        params = {n: p for n, p in self.named_parameters() if p.requires_grad}
        decay = [p for p in params.values() if p.dim() >= 2]
        no_decay = [p for p in params.values() if p.dim() < 2]
        groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
        return torch.optim.AdamW(groups, lr=learning_rate, betas=betas, fused=fused or None)

    # ---- checkpoints (memory_mosaics.checkpoints owns the format) ---------------------------------------------------
    def save_pretrained(self, directory: str | Path) -> Path:
        """Write ``config.json`` and ``model.safetensors`` into ``directory`` (``checkpoints.save_model``)."""
        from memory_mosaics.checkpoints import save_model

        return save_model(self, directory)

    @classmethod
    def from_pretrained(
        cls, directory: str | Path, vocab_size: int | None = None, map_location: str | torch.device = "cpu"
    ) -> LanguageModel:
        """Load a model saved by ``save_pretrained`` (``checkpoints.load_model``)."""
        from memory_mosaics.checkpoints import load_model

        return load_model(directory, cls, vocab_size, map_location)


RANGES: dict[str, Callable[[Any], bool]] = {
    ">= 1": lambda v: v >= 1,
    ">= 0": lambda v: v >= 0,
    "> 0": lambda v: v > 0,
    "in [0, 1)": lambda v: 0 <= v < 1,
    "in [0, 1]": lambda v: 0 <= v <= 1,
}


def check_range(config: Any, rule: str, names: Iterable[str], label: Callable[[str], str] = str) -> None:
    """Refuse the first field of ``config`` among ``names`` whose value breaks ``rule`` (a key of RANGES): a ValueError
    "<label(name)> must be <rule>, got <value>". The configurations of the models, of training and of the experiments
    check their fields with it."""
    for name in names:
        value = getattr(config, name)
        if not RANGES[rule](value):
            raise ValueError(f"{label(name)} must be {rule}, got {value}")


def check_common(c: Any) -> None:
    """Checks every architecture config shares: positive sizes, heads dividing the width, dropout in [0, 1)."""
    check_range(c, ">= 1", ("vocab_size", "block_size", "n_layer", "n_head", "n_embd"))
    if c.n_embd % c.n_head:
        raise ValueError(f"n_embd ({c.n_embd}) must be divisible by n_head ({c.n_head})")
    check_range(c, "in [0, 1)", ("dropout",))
    if c.init not in INITS:
        raise ValueError(f"init must be one of {INITS}, got {c.init!r}")
    check_range(c, "> 0", ("logit_scale",))
    check_doc_token(c)


def check_doc_token(c: Any) -> None:
    """``doc_token`` (document-wise masking) is None or a token of the vocabulary."""
    if c.doc_token is not None and not 0 <= c.doc_token < c.vocab_size:
        raise ValueError(f"doc_token must be a token id in [0, vocab_size = {c.vocab_size}), got {c.doc_token}")
