import math

import pytest
import torch

from memory_mosaics.experiments.moons.data import VAL_COMBO, MoonsData
from memory_mosaics.experiments.moons.evaluate import (
    disentanglement,
    permutation_distance,
    rollout_error,
    rollout_error_naive,
)
from memory_mosaics.experiments.moons.model import MoonsNet


def _identity_net(n_heads: int, key_scale: float = 1.0) -> MoonsNet:
    net = MoonsNet(n_heads)
    with torch.no_grad():
        for w in (net.W_phi, net.W_psi, net.W_z):
            w.zero_()
            w[..., 0] = torch.eye(3)
        net.W_phi.mul_(key_scale)
    return net


@pytest.mark.parametrize("n_heads", [1, 3])
def test_rollout_error_matches_rerunning_the_net(n_heads):
    torch.manual_seed(0)
    net = MoonsNet(n_heads)
    seq = MoonsData().sequences(VAL_COMBO, 2, torch.Generator().manual_seed(2))[:, :120]
    contexts = [1, 2, 41, 40, 90]
    fast = rollout_error(net, seq, contexts, chunk=3)
    slow = torch.tensor([rollout_error_naive(net, seq, c) for c in contexts])
    assert torch.allclose(fast, slow, atol=1e-5)


def test_identity_three_heads_predicts_after_max_period_and_one_head_after_lcm():
    """The analytic solution with sharp keys reproduces the two astronomers."""
    seq = MoonsData().sequences(VAL_COMBO, 8, torch.Generator().manual_seed(3))
    err3 = rollout_error(_identity_net(3, 6.0), seq, [100, 150, 200])
    err1 = rollout_error(_identity_net(1, 3.0), seq, [150, 200, 300])
    assert err3[0] > 0.1 and err3[1:].max() < 0.05
    assert err1[:2].min() > 0.3 and err1[2] < 0.05


def test_disentanglement_score():
    net = _identity_net(3)
    assert disentanglement(net)["score"] == pytest.approx(0.0) and disentanglement(net)["consistent"]
    perm = torch.tensor([2, 0, 1])
    phase = torch.tensor([0.3, -1.0, 2.0])
    with torch.no_grad():  # heads read moons (2, 0, 1) with arbitrary phases and scales; W_z routes them back
        net.W_phi.copy_(torch.stack((phase.cos(), phase.sin()), -1)[:, None] * torch.eye(3)[perm][..., None] * 3)
        net.W_psi.copy_(torch.eye(3)[perm][..., None] * torch.tensor([1.0, 0.0]))
        net.W_z.copy_(torch.eye(3)[perm].T[..., None] * torch.tensor([0.0, 2.0]))
    d = disentanglement(net)
    assert d["score"] < 1e-6 and d["consistent"] and d["W_phi"]["perm"] == [2, 0, 1]
    with torch.no_grad():
        net.W_z.copy_(torch.eye(3)[..., None] * torch.tensor([1.0, 0.0]))  # routes head h to moon h: inconsistent
    assert not disentanglement(net)["consistent"]
    assert permutation_distance(torch.ones(3, 3, 2))[0] == pytest.approx(math.sqrt(1 / 3))
