"""Few-shot classification with anonymous labels (the analogue of the v2 paper's Figs. 3–4, §2 of specs/mosaics_v2.md).

A fixed pool of ``n_pool`` classes, each a prototype of ``item_len`` tokens (drawn once from ``pool_seed``). A sequence
picks C classes, gives each a label token drawn afresh for that sequence (so no label means anything outside its
context), and shows k noisy items per class ``item label``, shuffled, then one query item of one of the C classes
followed by its label. An item is its class's prototype with each token replaced, with probability ``noise``, by a
uniform item token. Scored: the query's label, predicted at its last item token; with ``score_shots`` (a denser
training signal) also the label of every shot whose class has already been shown with that label earlier in the
sequence, the only shot labels the context determines.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from memory_mosaics.experiments.longctx.common import IGNORE, TaskBatch, rng, to_batch


@dataclass(frozen=True)
class FewShot:
    """The task's vocabulary and class pool: item tokens [0, n_item_tokens), then n_labels label tokens."""

    n_pool: int = 64
    item_len: int = 4
    n_item_tokens: int = 128
    n_labels: int = 16
    noise: float = 0.25
    pool_seed: int = 0
    prototypes: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not 0.0 <= self.noise <= 1.0:
            raise ValueError(f"noise must be in [0, 1], got {self.noise}")
        if min(self.n_pool, self.item_len, self.n_item_tokens, self.n_labels) < 1:
            raise ValueError("n_pool, item_len, n_item_tokens and n_labels must be >= 1")
        object.__setattr__(
            self,
            "prototypes",
            rng(self.pool_seed, 0xC1A55).integers(0, self.n_item_tokens, (self.n_pool, self.item_len)),
        )

    @property
    def vocab_size(self) -> int:
        return self.n_item_tokens + self.n_labels

    def seq_len(self, classes: int, shots: int) -> int:
        return (classes * shots + 1) * (self.item_len + 1)

    def sample(
        self, batch: int, classes: int, shots: int, generator: np.random.Generator, score_shots: bool = False
    ) -> TaskBatch:
        """``batch`` sequences of C = ``classes`` classes, k = ``shots`` shots each and one query (k = 0: the query
        alone, which no model can answer above chance 1/C)."""
        if not 1 <= classes <= min(self.n_pool, self.n_labels):
            raise ValueError(f"classes must be in [1, min(n_pool, n_labels)], got {classes}")
        if shots < 0:
            raise ValueError(f"shots must be >= 0, got {shots}")
        L, T = self.item_len, self.seq_len(classes, shots)
        inputs = np.empty((batch, T), dtype=np.int64)
        targets = np.full((batch, T), IGNORE, dtype=np.int64)
        for b in range(batch):
            chosen = generator.choice(self.n_pool, classes, replace=False)
            labels = self.n_item_tokens + generator.choice(self.n_labels, classes, replace=False)
            order = np.append(generator.permutation(np.repeat(np.arange(classes), shots)), generator.integers(classes))
            items = self.prototypes[chosen[order]].copy()
            flip = generator.random(items.shape) < self.noise
            items[flip] = generator.integers(0, self.n_item_tokens, int(flip.sum()))
            inputs[b] = np.concatenate([items, labels[order][:, None]], axis=1).reshape(-1)
            label_at = np.arange(1, len(order) + 1) * (L + 1) - 2  # last item token: predicts the label
            seen = np.zeros(classes, dtype=bool)
            for i, c in enumerate(order):
                if i == len(order) - 1 or (score_shots and seen[c]):
                    targets[b, label_at[i]] = labels[c]
                seen[c] = True
        return to_batch(inputs, targets)
