"""Learning-rate schedule: linear warm-up, then cosine decay to a floor (Appendix C: 5e-3 -> 1e-4, 2000 warm-up)."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class WarmupCosine:
    """A pure function of the step, so resuming needs nothing but the step number."""

    lr: float
    min_lr: float
    warmup_iters: int
    decay_iters: int  # the step at which the cosine reaches min_lr (usually the last step)

    def __call__(self, step: int) -> float:
        if step < self.warmup_iters:
            return self.lr * (step + 1) / self.warmup_iters
        if step >= self.decay_iters:
            return self.min_lr
        progress = (step - self.warmup_iters) / max(1, self.decay_iters - self.warmup_iters)
        return self.min_lr + 0.5 * (1.0 + math.cos(math.pi * progress)) * (self.lr - self.min_lr)
