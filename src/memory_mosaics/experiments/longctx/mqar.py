"""MQAR, multi-query associative recall, as Zoology defines it (Arora et al. 2023, zoology/data/associative_recall.py).

A sequence opens with ``n_kv`` key-value pairs ``k1 v1 k2 v2 …`` (keys drawn without replacement from the first half of
the vocabulary without token 0, values from the second half); the rest of the sequence is filler (token 0, or random
tokens with ``random_filler``) in which every key is queried once, at even offsets drawn without replacement with a
power law, p(gap = g) ∝ g^(a − 1) (a = 0.01: short gaps are likelier, long ones still occur). The model is scored only
where it reads a queried key and must predict its value; the token after a query is filler, not the value, so a
query's answer is never in the input.
"""

from __future__ import annotations

import numpy as np

from memory_mosaics.experiments.longctx.common import IGNORE, TaskBatch, to_batch

# the grid, (sequence length, key-value pairs) from (64, 4) to (512, 64): every pair whose queries fit
GRID_LENGTHS = (64, 128, 256, 512)
GRID_PAIRS = (4, 8, 16, 32, 64)
FILLER = 0


def grid(lengths: tuple[int, ...] = GRID_LENGTHS, pairs: tuple[int, ...] = GRID_PAIRS) -> list[tuple[int, int]]:
    """The (seq_len, n_kv) cells with room for the pairs and their queries (seq_len ≥ 4·n_kv)."""
    return [(t, n) for t in lengths for n in pairs if 4 * n <= t]


def check(seq_len: int, n_kv: int, vocab_size: int) -> None:
    if n_kv < 1 or seq_len < 4 * n_kv:
        raise ValueError(f"MQAR needs seq_len >= 4·n_kv (pairs and as many query slots), got ({seq_len}, {n_kv})")
    if vocab_size // 2 - 1 < n_kv or vocab_size - vocab_size // 2 < n_kv:
        raise ValueError(f"vocab_size {vocab_size} is too small for {n_kv} distinct keys and values")


def mqar(
    batch: int,
    seq_len: int,
    n_kv: int,
    vocab_size: int,
    rng: np.random.Generator,
    power_a: float = 0.01,
    random_filler: bool = False,
) -> TaskBatch:
    """``batch`` MQAR sequences of ``seq_len`` tokens with ``n_kv`` pairs each."""
    check(seq_len, n_kv, vocab_size)
    half = vocab_size // 2
    context = 2 * n_kv
    space = (seq_len - context) // 2  # query slots: even offsets after the pairs
    p = power_a * np.arange(1, space + 1, dtype=np.float64) ** (power_a - 1)
    p /= p.sum()
    inputs = np.full((batch, seq_len), FILLER, dtype=np.int64)
    targets = np.full((batch, seq_len), IGNORE, dtype=np.int64)
    for b in range(batch):
        keys = rng.choice(np.arange(1, half), n_kv, replace=False)
        values = rng.choice(np.arange(half, vocab_size), n_kv, replace=False)
        inputs[b, 0:context:2], inputs[b, 1:context:2] = keys, values
        where = context + 2 * rng.choice(space, n_kv, replace=False, p=p)  # key i is queried at where[i]
        inputs[b, where] = keys
        targets[b, where] = values
    if random_filler:  # Zoology's random_non_queries: the filler becomes noise from the whole vocabulary
        filler = inputs == FILLER
        filler[:, :context] = False
        inputs[filler] = rng.integers(0, vocab_size, int(filler.sum()))
    return to_batch(inputs, targets)
