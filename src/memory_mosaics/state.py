"""Streaming state: what a model carries from one token to the next.

A contextual memory stores its (key, value) pairs exactly like a transformer's KV cache stores keys and values, so both
models share ``PairStore``. Persistent memories only carry the leaky state of their key extractor.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

import torch
from torch import Tensor


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
    u_{t-1} = W_v x_{t-1} that completes v_{t-1} when x_t arrives."""

    leaky: Tensor | None = None
    keys: PairStore = field(default_factory=PairStore)
    values: PairStore = field(default_factory=PairStore)
    pending_u: Tensor | None = None


@dataclass
class PersistentState(LayerState):
    """The leaky state of the key extractor, and (under ``torch.no_grad``) the scaled bank keyed by the dtype and the
    versions and storages of the parameters it came from. The bank is the same for every sequence, so ``reorder``
    leaves it alone (it is a tuple)."""

    leaky: Tensor | None = None
    bank: tuple[tuple, tuple[Tensor, Tensor]] | None = None


@dataclass
class AttentionState(LayerState):
    """A transformer's KV cache."""

    keys: PairStore = field(default_factory=PairStore)
    values: PairStore = field(default_factory=PairStore)


@dataclass
class ModelState:
    """The state of a whole model: one entry per stateful layer, and the number of tokens already seen."""

    layers: list[LayerState]
    position: int = 0

    def reorder(self, index: Tensor) -> None:
        for layer in self.layers:
            layer.reorder(index)
