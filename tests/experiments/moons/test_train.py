import re

import pytest
import torch

from memory_mosaics.experiments.moons.data import VAL_COMBO, MoonsData
from memory_mosaics.experiments.moons.evaluate import rollout_error
from memory_mosaics.experiments.moons.model import MoonsNet
from memory_mosaics.experiments.moons.train import (
    MoonsTrainConfig,
    linear_schedule,
    one_head_config,
    rollout_loss,
    train_net,
)


@pytest.mark.parametrize("n_heads", [1, 3])
def test_short_training_decreases_the_loss(n_heads):
    cfg = MoonsTrainConfig(iters=25, batch_size=8, short_len=64, short_frac=1.0, restarts=1, rollout_iters=0)
    net, losses, rollout_losses = train_net(n_heads, seed=0, cfg=cfg)
    assert len(losses) == 25 and rollout_losses == []
    assert sum(losses[-5:]) / 5 < 0.7 * sum(losses[:5]) / 5
    assert isinstance(net, MoonsNet)


def test_rollout_loss_is_the_evaluated_error_and_has_gradients():
    data = MoonsData()
    net = MoonsNet(3, generator=torch.Generator().manual_seed(0))
    seq = data.sequences(VAL_COMBO, 3, torch.Generator().manual_seed(1), length=120)
    contexts = [40, 1, 90]  # one per sequence, including an empty memory
    loss = rollout_loss(net, seq, contexts, steps=7)
    with torch.no_grad():
        expected = torch.stack([rollout_error(net, seq[b : b + 1], [c], steps=7)[0] for b, c in enumerate(contexts)])
    torch.testing.assert_close(loss, expected.mean(), rtol=1e-5, atol=1e-6)
    loss.backward()
    for p in net.parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0


def test_rollout_phase_runs_for_three_heads_only():
    cfg = MoonsTrainConfig(iters=4, short_len=40, short_frac=0.5, restarts=1, rollout_iters=3, rollout_context=(20, 60))
    _, losses, rollout_losses = train_net(3, seed=0, cfg=cfg)
    assert len(losses) == 4 and len(rollout_losses) == 3
    assert one_head_config(cfg).rollout_iters == 0


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("iters", 0, "iters must be >= 1"),
        ("lr", -1.0, "lr must be > 0"),
        ("short_frac", 1.5, "short_frac must be in [0, 1]"),
        ("rollout_context", (400, 60), "1 <= lo < hi"),
    ],
)
def test_a_recipe_that_cannot_train_is_refused(field, value, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        MoonsTrainConfig(**{field: value})


@pytest.mark.parametrize("lr, lr_end, iters", [(3e-2, 5e-6, 400), (1e-2, 5e-6, 500), (5e-4, 0.0, 150), (1.0, 0.5, 7)])
def test_linear_schedule_is_the_factor_it_replaced(lr, lr_end, iters):
    factor = linear_schedule(lr, lr_end, iters)
    for i in range(iters + 5):
        assert factor(i) == 1 + (lr_end / lr - 1) * min(i, iters) / iters  # the authors' optim.linear_schedule
        if lr_end == 0:
            assert factor(min(i, iters)) == 1 - min(i, iters) / iters  # the rollout phase's former lambda
