"""Needle retrieval and variable tracking in the style of RULER (Hsieh et al. 2024), generated and offline.

Both hide short statements at random depths in a haystack, either real text tokens (a token shard that
``mosaic prepare`` made, e.g. the TinyStories slice) or uniform noise over the haystack's vocabulary, and ask about them
at the end. The statements use tokens outside the haystack's vocabulary (``Layout``), so the haystack never holds a
marker, key or value by accident.

- Needles (RULER's NIAH, multi-key / multi-query): ``n_needles`` statements ``NEEDLE key value`` with distinct keys
  (``key_len`` tokens) and random values (``value_len`` tokens); then ``n_queries`` of them, in random order,
  ``QUERY key value``. Scored: the value's tokens, predicted from the query's last key token onwards.
- Variable tracking (RULER's VT): ``n_chains`` chains of ``hops + 1`` assignments ``ASSIGN x0 value``,
  ``ASSIGN x1 x0`` … ``ASSIGN xh x(h-1)`` (names distinct; each chain in its order, chains interleaved); then
  ``n_queries`` chains are asked ``QUERY xh value``. Scored: the value, predicted at the queried name.

Testing at k× the training length grows the haystack only: the same statements, more distance.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from memory_mosaics.experiments.longctx.common import IGNORE, TaskBatch, to_batch


@dataclass(frozen=True)
class Haystack:
    """Where filler tokens come from: windows of ``tokens`` (real text) or, with ``tokens`` None, uniform noise over
    ``vocab_size``."""

    vocab_size: int
    tokens: np.ndarray | None = None
    source: str = "noise"

    @classmethod
    def noise(cls, vocab_size: int) -> Haystack:
        return cls(vocab_size)

    @classmethod
    def from_tokens(cls, tokens: np.ndarray, vocab_size: int, source: str = "tokens") -> Haystack:
        if tokens.ndim != 1 or len(tokens) == 0:
            raise ValueError("haystack tokens must be a non-empty 1-D array")
        if int(tokens.max()) >= vocab_size or int(tokens.min()) < 0:
            raise ValueError(f"haystack tokens fall outside the vocabulary of {vocab_size}")
        return cls(vocab_size, tokens, source)

    @classmethod
    def from_shard(cls, directory: str | Path, split: str = "train") -> Haystack:
        """A split of a dataset ``mosaic prepare`` wrote (memory-mapped: nothing is read until sampled)."""
        from memory_mosaics.data.shards import TokenShard

        shard = TokenShard.open(directory, split)
        return cls(shard.vocab_size, shard.tokens, f"{Path(directory)}:{split}")

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        if self.tokens is None:
            return rng.integers(0, self.vocab_size, n)
        if len(self.tokens) < n:
            raise ValueError(f"haystack of {len(self.tokens)} tokens cannot fill {n} positions")
        start = int(rng.integers(0, len(self.tokens) - n + 1))
        return np.asarray(self.tokens[start : start + n], dtype=np.int64)


@dataclass(frozen=True)
class Layout:
    """Token ids: the haystack's vocabulary first, then a statement marker, the query marker, the key (or variable
    name) tokens and the value tokens."""

    haystack_vocab: int
    n_keys: int = 64
    n_values: int = 64

    @property
    def marker(self) -> int:  # NEEDLE or ASSIGN
        return self.haystack_vocab

    @property
    def query(self) -> int:
        return self.haystack_vocab + 1

    @property
    def key_base(self) -> int:
        return self.haystack_vocab + 2

    @property
    def value_base(self) -> int:
        return self.key_base + self.n_keys

    @property
    def vocab_size(self) -> int:
        return self.value_base + self.n_values


def _fill(
    haystack: Haystack, seq_len: int, statements: list[np.ndarray], tail: list[np.ndarray], rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """A sequence of ``seq_len`` tokens: the haystack with ``statements`` inserted, in this order, at sorted random
    depths, then ``tail``. Returns the sequence and where each tail piece starts."""
    used = sum(len(s) for s in statements) + sum(len(q) for q in tail)
    hay_len = seq_len - used
    if hay_len < 0:
        raise ValueError(f"seq_len {seq_len} is too short for {used} tokens of statements and queries")
    hay = haystack.sample(rng, hay_len)
    cuts = np.sort(rng.integers(0, hay_len + 1, len(statements)))
    parts, prev = [], 0
    for cut, s in zip(cuts, statements, strict=True):
        parts += [hay[prev:cut], s]
        prev = int(cut)
    parts.append(hay[prev:])
    starts = np.cumsum([0, *(len(q) for q in tail)])[:-1] + seq_len - sum(len(q) for q in tail)
    seq = np.concatenate([*parts, *tail]).astype(np.int64)
    return seq, starts


def needles(
    batch: int,
    seq_len: int,
    haystack: Haystack,
    rng: np.random.Generator,
    n_needles: int = 4,
    n_queries: int = 1,
    key_len: int = 1,
    value_len: int = 1,
    layout: Layout | None = None,
) -> TaskBatch:
    """``batch`` needle-retrieval sequences of ``seq_len`` tokens."""
    lay = layout or Layout(haystack.vocab_size)
    if lay.haystack_vocab != haystack.vocab_size:
        raise ValueError(f"layout is for a haystack vocabulary of {lay.haystack_vocab}, not {haystack.vocab_size}")
    if not 1 <= n_queries <= n_needles:
        raise ValueError(f"need 1 <= n_queries <= n_needles, got {n_queries} and {n_needles}")
    if n_needles > lay.n_keys**key_len:
        raise ValueError(f"{n_needles} distinct keys of {key_len} token(s) need more than {lay.n_keys} key tokens")
    inputs = np.empty((batch, seq_len), dtype=np.int64)
    targets = np.full((batch, seq_len), IGNORE, dtype=np.int64)
    for b in range(batch):
        codes = rng.choice(lay.n_keys**key_len, n_needles, replace=False)  # distinct keys
        keys = lay.key_base + np.stack([(codes // lay.n_keys**j) % lay.n_keys for j in range(key_len)], axis=1)
        values = lay.value_base + rng.integers(0, lay.n_values, (n_needles, value_len))
        statements = [np.concatenate([[lay.marker], keys[i], values[i]]) for i in rng.permutation(n_needles)]
        asked = rng.choice(n_needles, n_queries, replace=False)
        tail = [np.concatenate([[lay.query], keys[i], values[i]]) for i in asked]
        inputs[b], starts = _fill(haystack, seq_len, statements, tail, rng)
        for s in starts:  # predicted from the last key token: value tokens 0 … value_len - 1
            first = s + key_len  # position of the last key token
            targets[b, first : first + value_len] = inputs[b, first + 1 : first + 1 + value_len]
    return to_batch(inputs, targets)


def variable_tracking(
    batch: int,
    seq_len: int,
    haystack: Haystack,
    rng: np.random.Generator,
    n_chains: int = 2,
    hops: int = 2,
    n_queries: int = 1,
    layout: Layout | None = None,
) -> TaskBatch:
    """``batch`` variable-tracking sequences of ``seq_len`` tokens: the layout's keys serve as variable names."""
    lay = layout or Layout(haystack.vocab_size)
    if not 1 <= n_queries <= n_chains:
        raise ValueError(f"need 1 <= n_queries <= n_chains, got {n_queries} and {n_chains}")
    if n_chains * (hops + 1) > lay.n_keys:
        raise ValueError(f"{n_chains} chains of {hops + 1} variables need more than {lay.n_keys} name tokens")
    inputs = np.empty((batch, seq_len), dtype=np.int64)
    targets = np.full((batch, seq_len), IGNORE, dtype=np.int64)
    for b in range(batch):
        names = lay.key_base + rng.choice(lay.n_keys, (n_chains, hops + 1), replace=False)
        values = lay.value_base + rng.integers(0, lay.n_values, n_chains)
        chains = [
            [np.array([lay.marker, names[c, 0], values[c]])]
            + [np.array([lay.marker, names[c, j], names[c, j - 1]]) for j in range(1, hops + 1)]
            for c in range(n_chains)
        ]
        order = rng.permutation(np.repeat(np.arange(n_chains), hops + 1))  # interleave, each chain in its order
        statements = [chains[c].pop(0) for c in order]
        asked = rng.choice(n_chains, n_queries, replace=False)
        tail = [np.array([lay.query, names[c, hops], values[c]]) for c in asked]
        inputs[b], starts = _fill(haystack, seq_len, statements, tail, rng)
        targets[b, starts + 1] = inputs[b, starts + 2]  # the value, predicted at the queried name
    return to_batch(inputs, targets)
