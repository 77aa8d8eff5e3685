"""The two RegBench numbers (§4), pooled over every input position of every test sequence (no per-sequence
averaging), including the positions whose target is '|'.

- accuracy: the argmax of the model's distribution is a legal continuation (q_t(argmax p_t) > 0); '|' and '.' are
  never legal, so predicting them always counts as wrong;
- TVD: ½ Σ_v |p_t(v) − q_t(v)|, the halved L1 distance of the paper's figures (not the unhalved online metric).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class PooledMetrics:
    """Sums over positions; add blocks of (probabilities, exact distributions) and read the pooled means."""

    correct: float = 0.0
    tvd_sum: float = 0.0
    kl_sum: float = 0.0
    count: int = 0

    def add(self, p: np.ndarray, q: np.ndarray) -> None:
        """``p`` and ``q`` are (positions, vocab) rows of model and exact probabilities."""
        if p.shape != q.shape:
            raise ValueError(f"shape mismatch: model {p.shape} vs exact {q.shape}")
        p, q = np.asarray(p, dtype=np.float64), np.asarray(q, dtype=np.float64)
        pred = p.argmax(-1)
        self.correct += float((q[np.arange(len(q)), pred] > 0).sum())
        self.tvd_sum += float(0.5 * np.abs(p - q).sum())
        # KL(q||p) with the benchmark's eps 1e-7 (computed there, never plotted)
        self.kl_sum += float((q * (np.log(q + 1e-7) - np.log(p + 1e-7))).sum())
        self.count += len(q)

    def result(self) -> dict[str, float]:
        n = max(self.count, 1)
        return {"accuracy": self.correct / n, "tvd": self.tvd_sum / n, "kl": self.kl_sum / n, "positions": self.count}


def score(probs: list[np.ndarray], exact: list[np.ndarray]) -> dict[str, float]:
    """Pooled accuracy and TVD of per-sequence model distributions against the exact ones."""
    m = PooledMetrics()
    for p, q in zip(probs, exact, strict=True):
        m.add(p, q)
    return m.result()
