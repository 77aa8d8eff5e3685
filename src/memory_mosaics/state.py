"""Streaming state: what a model carries from one token to the next.

A contextual memory stores its (key, value) pairs exactly like a transformer's KV cache stores keys and values, so both
models share ``PairStore``. Persistent memories only carry the leaky state of their key extractor. Both kinds also keep
what they derive from their parameters (``ParamCache``), instead of deriving it again for every token.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, fields
from typing import TypeVar

import torch
from torch import Tensor, nn

T = TypeVar("T")


class PairStore:
    """A growing (B, H, T, D) tensor appended along T.

    Under ``torch.no_grad`` it writes into a buffer whose capacity doubles, so streaming n tokens costs O(n) copies
    instead of the O(n²) of repeated concatenation; with autograd on it concatenates, so gradients flow through.
    """

    def __init__(self) -> None:
        self._buf: Tensor | None = None
        self.length = 0

    @property
    def data(self) -> Tensor | None:
        return None if self._buf is None else self._buf[:, :, : self.length]

    def append(self, x: Tensor) -> None:
        n = x.shape[2]
        if self._buf is None:
            self._buf, self.length = x, n
            return
        if torch.is_grad_enabled() and (x.requires_grad or self._buf.requires_grad):
            self._buf, self.length = torch.cat([self.data, x], dim=2), self.length + n
            return
        if self.length + n > self._buf.shape[2] or self._buf.requires_grad:
            capacity = max(2 * self._buf.shape[2], self.length + n)
            new = self._buf.new_empty(*self._buf.shape[:2], capacity, self._buf.shape[3])
            new[:, :, : self.length] = self.data
            self._buf = new
        self._buf[:, :, self.length : self.length + n] = x
        self.length += n

    def reorder(self, index: Tensor) -> None:
        if self._buf is not None:
            self._buf = self._buf.index_select(0, index)

    def drop_first(self, n: int) -> None:
        """Forget the first n entries (a copy of the rest, so the old buffer is freed)."""
        if self._buf is not None and n > 0:
            self._buf = self.data[:, :, n:].clone()
            self.length = self._buf.shape[2]


class ParamCache:
    """Tensors derived from a module's own parameters (per-head constants, a scaled bank), kept from one streamed token
    to the next under ``torch.no_grad``: one entry per module, rebuilt when the dtype or any of the module's own
    parameters changes, in place (its version counter: an optimiser step, ``load_state_dict``) or by a replaced
    ``.data`` (its storage). With autograd on it keeps nothing, so gradients reach the parameters. The entries do not
    depend on the batch, so ``reorder`` keeps them; a deep copy of a state starts empty (it would copy the modules)."""

    def __init__(self) -> None:
        self._entries: dict[int, tuple[nn.Module, tuple, object]] = {}

    def __deepcopy__(self, memo: dict) -> ParamCache:
        return ParamCache()

    def get(
        self, module: nn.Module, dtype: torch.dtype, make: Callable[[], T], params: Iterable[Tensor] | None = None
    ) -> T:
        """The entry of ``module``; ``params`` (default: the module's own) are those it is derived from."""
        if torch.is_grad_enabled():
            return make()
        params = module.parameters(recurse=False) if params is None else params
        key = (dtype, *((p._version, p.data_ptr()) for p in params))
        entry = self._entries.get(id(module))
        if entry is None or entry[0] is not module or entry[1] != key:
            entry = self._entries[id(module)] = (module, key, make())
        return entry[2]  # type: ignore[return-value]


def _reorder(value: object, index: Tensor) -> object:
    if isinstance(value, Tensor):
        return value.index_select(0, index)
    if isinstance(value, PairStore | LayerState):
        value.reorder(index)
    return value


@dataclass
class LayerState:
    """Base for per-layer states: ``reorder`` selects batch rows (beam search)."""

    def reorder(self, index: Tensor) -> None:
        for f in fields(self):
            setattr(self, f.name, _reorder(getattr(self, f.name), index))


@dataclass
class ContextualState(LayerState):
    """After tokens 0..t-1: the leaky state k̄_{t-1}, keys k_0..k_{t-1}, values v_0..v_{t-2}, and the pending
    u_{t-1} = W_v x_{t-1} that completes v_{t-1} when x_t arrives (and the per-head constants, while streaming)."""

    leaky: Tensor | None = None
    keys: PairStore = field(default_factory=PairStore)
    values: PairStore = field(default_factory=PairStore)
    pending_u: Tensor | None = None
    cache: ParamCache = field(default_factory=ParamCache)


@dataclass
class PersistentState(LayerState):
    """The leaky state of the key extractor (and the per-head constants and the scaled bank, while streaming)."""

    leaky: Tensor | None = None
    cache: ParamCache = field(default_factory=ParamCache)


@dataclass
class WindowedState(LayerState):
    """A v2 contextual memory after tokens 0..t-1: the gated-key state k̄_{t-1} = exp(key_s)·key_u, the stored keys and
    values (from absolute position ``first``: a short-term memory drops the pairs no later query can see, so its store
    stays below twice its window), and the pending u_{t-1} that completes v_{t-1}."""

    key_u: Tensor | None = None
    key_s: Tensor | None = None
    keys: PairStore = field(default_factory=PairStore)
    values: PairStore = field(default_factory=PairStore)
    pending_u: Tensor | None = None
    first: int = 0
    cache: ParamCache = field(default_factory=ParamCache)

    @property
    def seen(self) -> int:
        """Tokens seen: the absolute position of the next one."""
        return self.first + self.keys.length

    def drop_before(self, position: int) -> None:
        """Forget the pairs before absolute ``position`` once they fill half the store (amortised O(1) per token)."""
        n = position - self.first
        if n <= 0 or n < self.keys.length // 2 or torch.is_grad_enabled():
            return
        self.keys.drop_first(n)
        self.values.drop_first(n)
        self.first = position


@dataclass
class AttentionState(LayerState):
    """A transformer's KV cache."""

    keys: PairStore = field(default_factory=PairStore)
    values: PairStore = field(default_factory=PairStore)


@dataclass
class ModelState:
    """The state of a whole model: one entry per stateful layer, the number of tokens already seen, the kind of model
    that made it and, once it has seen tokens, the number of sequences it holds."""

    layers: list[LayerState]
    position: int = 0
    model_type: str = ""
    batch_size: int | None = None
    document_ended: bool = False  # the last token seen closed a document (document-wise masking)

    def restart(self, fresh: ModelState) -> None:
        """Forget everything seen (a new document starts): the layers of ``fresh``, position 0."""
        self.layers, self.position = fresh.layers, 0

    def check(self, model_type: str, n_layer: int, batch_size: int) -> None:
        """Refuse to continue with another kind or depth of model, or with another number of sequences."""
        if (self.model_type, len(self.layers)) != (model_type, n_layer):
            raise ValueError(
                f"this state was made by a {self.model_type or 'different'} model of {len(self.layers)} layers, not "
                f"by this {model_type} of {n_layer}: start it with this model's init_state()"
            )
        if self.batch_size is not None and batch_size != self.batch_size:
            raise ValueError(
                f"the state holds {self.batch_size} sequences but idx has {batch_size} rows "
                "(reorder the state to select sequences)"
            )
        self.batch_size = batch_size

    def reorder(self, index: Tensor) -> None:
        for layer in self.layers:
            layer.reorder(index)
        if self.batch_size is not None:
            self.batch_size = index.numel()
