"""Learning-rate schedule: linear warm-up, then cosine decay to a floor. One class for both shapes in use: the language
models' (Appendix C: 5e-3 -> 1e-4, 2000 warm-up steps) and RegBench's (timm's scheduler, as in the benchmark)."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class WarmupCosine:
    """A pure function of the step, so resuming needs nothing but the step number.

    The defaults are the language models' shape: warm-up lr·(step + 1)/warmup_iters, which reaches lr on its last
    step, and a cosine counted from the end of the warm-up. RegBench's (timm's) shape sets ``warmup_start_lr`` (a
    warm-up from that value, reaching lr only after it) and ``cosine_from_zero`` (the cosine is counted from step 0,
    so it has already decayed a little when the warm-up ends).
    """

    lr: float
    min_lr: float
    warmup_iters: int
    decay_iters: int  # the step at which the cosine reaches min_lr (usually the last step)
    warmup_start_lr: float | None = None
    cosine_from_zero: bool = False

    def __call__(self, step: int) -> float:
        if step < self.warmup_iters:
            if self.warmup_start_lr is None:
                return self.lr * (step + 1) / self.warmup_iters
            return self.warmup_start_lr + step * (self.lr - self.warmup_start_lr) / self.warmup_iters
        if step >= self.decay_iters:
            return self.min_lr
        # each shape keeps the order of operations of the formula it replaced, so both give the same floats
        if self.cosine_from_zero:
            angle = math.pi * step / max(1, self.decay_iters)
        else:
            angle = math.pi * ((step - self.warmup_iters) / max(1, self.decay_iters - self.warmup_iters))
        return self.min_lr + 0.5 * (1.0 + math.cos(angle)) * (self.lr - self.min_lr)
