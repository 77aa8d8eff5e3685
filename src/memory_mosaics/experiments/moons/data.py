"""The three-moons data of Section 5 (protocol in ``docs/three_moons.md``).

Three moons turn on circles with periods p_1, p_2, p_3 (in time units); an observation is the three positions e^{iθ_k},
stored as (sin θ_k, cos θ_k) pairs, i.e. 6 reals. The 9 period combinations with the smallest full period lcm(p) are
kept; the last one, (1, 2, 3), is held out for validation. Each of its periods appears in training, but never together:
predicting it well after max(p) observations (rather than lcm(p)) is composition.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import reduce
from itertools import combinations

import torch
from torch import Tensor

PERIOD_VALUES = (0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5)
PHASE = 0.3  # θ_k = 2π t / p_k + 0.3
GRID_POINTS = 10_000  # t_j = j / u, j = 0 .. 9999


def lcm_periods(periods: tuple[float, ...]) -> float:
    """Full period of a moon system: the lcm computed on tenths of time units (periods are multiples of 0.1)."""
    return reduce(math.lcm, (round(10 * p) for p in periods)) / 10


# The 35 // 4 + 1 = 9 combinations with the smallest full period. Seven combinations tie at lcm 6 for the last three
# places; the spec fixes the authors' order (their unstable sort), which puts (1, 2, 3) last, so we state it.
KEPT_COMBOS: tuple[tuple[float, ...], ...] = (
    (0.5, 1.0, 2.0),
    (0.5, 1.0, 1.5),
    (0.5, 1.0, 3.0),
    (0.5, 1.5, 3.0),
    (1.0, 1.5, 3.0),
    (0.5, 1.0, 2.5),
    (1.0, 1.5, 2.0),
    (0.5, 1.5, 2.0),
    (1.0, 2.0, 3.0),
)


def period_combinations() -> tuple[list[tuple[float, ...]], tuple[float, ...]]:
    """(the 8 training combinations, the validation combination (1, 2, 3)), checked against the selection rule:
    9 of the 35 combinations of 3 distinct periods, with the smallest full periods."""
    combos = list(combinations(PERIOD_VALUES, 3))
    n_kept = len(combos) // 4 + 1
    cutoff = sorted(lcm_periods(c) for c in combos)[n_kept - 1]
    assert len(KEPT_COMBOS) == n_kept and all(c in combos and lcm_periods(c) <= cutoff for c in KEPT_COMBOS)
    assert all(c in KEPT_COMBOS for c in combos if lcm_periods(c) < cutoff)
    return list(KEPT_COMBOS[:-1]), KEPT_COMBOS[-1]


TRAIN_COMBOS, VAL_COMBO = period_combinations()


@dataclass(frozen=True)
class MoonsData:
    """Sequences of ``block_size`` observations (+1 for the target) on the grid of ``docs/three_moons.md``."""

    block_size: int = 800
    periods_per_block: int = 3  # a block covers this many full periods of the slowest training system
    train_combos: list[tuple[float, ...]] = field(default_factory=lambda: list(TRAIN_COMBOS))
    val_combo: tuple[float, ...] = VAL_COMBO

    @property
    def steps_per_unit(self) -> float:
        """u: observations per time unit (44.44 for block 800: 800 steps = 3 periods of the slowest system)."""
        slowest = max(lcm_periods(c) for c in [*self.train_combos, self.val_combo])
        return self.block_size / slowest / self.periods_per_block

    def periods_in_steps(self, periods: tuple[float, ...]) -> list[float]:
        return [p * self.steps_per_unit for p in periods]

    def lcm_in_steps(self, periods: tuple[float, ...]) -> float:
        return lcm_periods(periods) * self.steps_per_unit

    def sequences(
        self, periods: tuple[float, ...], batch_size: int, generator: torch.Generator, length: int | None = None
    ) -> Tensor:
        """(B, length, 6) observations of one period combination from random start points; length defaults to
        block_size + 1 (inputs and shifted targets)."""
        length = self.block_size + 1 if length is None else length
        # start range of the spec: j0 in [0, 10000 - 2·block_size - 1)
        j0 = torch.randint(0, GRID_POINTS - 2 * self.block_size - 1, (batch_size, 1), generator=generator)
        t = (j0 + torch.arange(length)).double() / self.steps_per_unit  # (B, L) time; float64 keeps large angles exact
        theta = 2 * math.pi * t[..., None] / torch.tensor(periods, dtype=torch.float64) + PHASE  # (B, L, 3)
        return torch.stack((theta.sin(), theta.cos()), dim=-1).flatten(-2).float()  # (sin θ_1, cos θ_1, sin θ_2, ...)

    def train_batch(
        self, batch_size: int, generator: torch.Generator, balanced: bool = True, seq_len: int | None = None
    ) -> tuple[Tensor, Tensor]:
        """Inputs x (B, T, 6) and targets y = x shifted by one step, T = seq_len or block_size. Each sequence comes
        from one training combination: drawn at random, or (``balanced``) cycling through all of them from a random
        offset, so that a small batch still covers every combination (few of them separate the two astronomers, see
        ``train``)."""
        n = len(self.train_combos)
        if balanced:
            which = ((torch.arange(batch_size) + torch.randint(n, (1,), generator=generator)) % n).tolist()
        else:
            which = torch.randint(n, (batch_size,), generator=generator).tolist()
        length = (seq_len or self.block_size) + 1
        seq = torch.cat([self.sequences(self.train_combos[i], 1, generator, length) for i in which])
        return seq[:, :-1], seq[:, 1:]
