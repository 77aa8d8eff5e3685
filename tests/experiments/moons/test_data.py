import math

import pytest
import torch

from memory_mosaics.experiments.moons.data import TRAIN_COMBOS, VAL_COMBO, MoonsData, lcm_periods


def test_period_combinations_and_lcm():
    assert lcm_periods((1.0, 2.0, 3.0)) == 6.0
    assert lcm_periods((0.5, 1.0, 2.5)) == 5.0
    assert lcm_periods((0.5, 1.5, 3.0)) == 3.0
    assert len(TRAIN_COMBOS) == 8 and VAL_COMBO == (1.0, 2.0, 3.0) and VAL_COMBO not in TRAIN_COMBOS
    assert max(lcm_periods(c) for c in TRAIN_COMBOS) == 6.0
    assert all(p in {q for c in TRAIN_COMBOS for q in c} for p in VAL_COMBO)  # each period is seen in training
    data = MoonsData()
    assert data.steps_per_unit == pytest.approx(800 / 6 / 3)
    assert data.periods_in_steps(VAL_COMBO) == pytest.approx([44.444, 88.889, 133.333], abs=1e-3)
    assert data.lcm_in_steps(VAL_COMBO) == pytest.approx(266.667, abs=1e-3)


def test_sequences_shapes_and_periods():
    data = MoonsData()
    gen = torch.Generator().manual_seed(0)
    x, y = data.train_batch(16, gen)
    assert x.shape == y.shape == (16, 800, 6)
    assert torch.equal(x[:, 1:], y[:, :-1])
    assert torch.allclose(x.view(16, 800, 3, 2).norm(dim=-1), torch.ones(16, 800, 3), atol=1e-5)
    seq = data.sequences(VAL_COMBO, 4, gen)
    assert seq.shape == (4, 801, 6)
    # each moon turns by 2π / (p·u) per step; the system repeats after lcm: 800 steps are exactly 3 full periods
    theta = torch.atan2(seq[..., 0::2].double(), seq[..., 1::2].double())  # stored as (sin θ, cos θ)
    step = torch.remainder(theta[:, 1:] - theta[:, :-1], 2 * math.pi)
    expected = torch.tensor([2 * math.pi / p for p in data.periods_in_steps(VAL_COMBO)], dtype=torch.float64)
    assert torch.allclose(step, expected.expand_as(step), atol=1e-5)
    assert torch.allclose(seq[:, 800], seq[:, 0], atol=1e-4)
    assert not torch.allclose(seq[:, 400], seq[:, 0], atol=1e-2)
    x, _ = data.train_batch(8, gen, seq_len=50)
    assert x.shape == (8, 50, 6)
