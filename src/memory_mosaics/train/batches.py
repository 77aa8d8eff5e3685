"""The seed-determined batch order of training.

The paper compares architectures "on the same mini-batches of examples in the same order" (App. D.2), so the order is
a function of the seed alone: epoch ``e`` cuts the training tokens into windows of ``block_size + 1`` tokens at an
offset drawn from ``Generator(seed, e)`` and visits them in a permutation drawn from the same generator. Global batch
``s`` is samples ``s·B .. s·B + B - 1`` of that endless stream; process ``r`` of ``W`` takes the contiguous slice
``r·B/W .. (r+1)·B/W`` and splits it into micro-batches, so the global batch does not depend on the world size, and the
data position is just the step number.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from memory_mosaics.data.shards import windows


def _generator(*key: int) -> torch.Generator:
    seed = 0
    for k in key:  # a fixed mix of the key (Python's hash() of tuples is not stable across runs for all types)
        seed = (seed * 1_000_003 + int(k) + 0x9E3779B9) % (2**63 - 1)
    return torch.Generator().manual_seed(seed)


class BatchOrder:
    """Which windows of ``tokens`` make up each global batch: a function of (seed, step) alone."""

    def __init__(self, tokens: np.ndarray, block_size: int, batch_size: int, seed: int) -> None:
        self.tokens, self.T, self.B, self.seed = tokens, block_size, batch_size, seed
        span = len(tokens) - 1  # inputs and targets need T + 1 tokens
        if span < block_size:
            raise ValueError(f"training split: {len(tokens)} tokens, fewer than block_size + 1 = {block_size + 1}")
        # one window fewer than fits, so that each epoch can start at a random offset and still fit every window
        self.windows = max(1, span // block_size - 1)
        self.max_offset = span - self.windows * block_size
        self._epoch, self._starts = -1, np.zeros(0, dtype=np.int64)

    def _epoch_starts(self, epoch: int) -> np.ndarray:
        if epoch != self._epoch:
            g = _generator(self.seed, epoch)
            offset = int(torch.randint(self.max_offset + 1, (1,), generator=g))
            perm = torch.randperm(self.windows, generator=g).numpy()
            self._epoch, self._starts = epoch, offset + perm.astype(np.int64) * self.T
        return self._starts

    def starts(self, first: int, count: int) -> np.ndarray:
        """Start offsets of samples ``first .. first + count - 1`` of the endless stream."""
        out = np.empty(count, dtype=np.int64)
        for i, k in enumerate(range(first, first + count)):
            epoch, pos = divmod(k, self.windows)
            out[i] = self._epoch_starts(epoch)[pos]
        return out

    def micro_batch(self, step: int, rank: int, world: int, micro: int, micro_size: int) -> tuple[Tensor, Tensor]:
        """Inputs and targets (micro_size, T) of micro-batch ``micro`` of process ``rank`` at step ``step``."""
        first = step * self.B + rank * (self.B // world) + micro * micro_size
        return windows(self.tokens, self.starts(first, micro_size), self.T)
