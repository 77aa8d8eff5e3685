"""The batch order and the learning-rate schedule: pure functions of (seed, step)."""

import numpy as np
import pytest
import torch

from memory_mosaics.train.batches import BatchOrder
from memory_mosaics.train.schedule import WarmupCosine


def test_each_epoch_visits_every_window_once() -> None:
    tokens = np.arange(1000, dtype=np.uint16)
    order = BatchOrder(tokens, block_size=10, batch_size=7, seed=3)
    for epoch in range(2):
        starts = order.starts(epoch * order.windows, order.windows)
        offset = starts.min() % 10
        assert sorted(starts.tolist()) == [offset + 10 * i for i in range(order.windows)]
        assert starts.max() + 11 <= len(tokens)
    assert not np.array_equal(order.starts(0, order.windows), order.starts(order.windows, order.windows))


@pytest.mark.parametrize("world", [2, 4])
def test_global_batch_does_not_depend_on_the_world_size(world: int) -> None:
    tokens = np.arange(5000, dtype=np.uint16)
    order = BatchOrder(tokens, block_size=16, batch_size=8, seed=11)
    for step in (0, 5, 40):  # 40 crosses an epoch boundary
        one = torch.cat([order.micro_batch(step, 0, 1, m, 2)[0] for m in range(4)])
        per_rank = 8 // world
        many = torch.cat(
            [order.micro_batch(step, r, world, m, 2)[0] for r in range(world) for m in range(per_rank // 2)]
        )
        assert torch.equal(one, many)
        x, y = order.micro_batch(step, 0, 1, 0, 8)
        assert torch.equal(x[:, 1:], y[:, :-1])  # targets are the inputs shifted by one


def test_schedule() -> None:
    s = WarmupCosine(lr=5e-3, min_lr=1e-4, warmup_iters=2000, decay_iters=80_000)
    assert s(0) == pytest.approx(5e-3 / 2000) and s(1999) == pytest.approx(5e-3)
    assert s(41_000) == pytest.approx((5e-3 + 1e-4) / 2)
    assert s(80_000) == s(90_000) == 1e-4
    assert all(s(i) >= s(i + 1000) for i in range(2000, 80_000, 1000))
