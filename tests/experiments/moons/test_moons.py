import math
import re

import pytest
import torch

from memory_mosaics.experiments.moons.data import TRAIN_COMBOS, VAL_COMBO, MoonsData, lcm_periods
from memory_mosaics.experiments.moons.evaluate import (
    disentanglement,
    permutation_distance,
    rollout_error,
    rollout_error_naive,
)
from memory_mosaics.experiments.moons.model import MoonsNet, clipped_loss, complex_linear
from memory_mosaics.experiments.moons.train import TrainConfig, one_head_config, rollout_loss, train_net


@pytest.fixture(autouse=True)
def _one_thread():
    """These nets are tiny: intra-op threads only add synchronisation (and stall when the cores are shared)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _identity_net(n_heads: int, key_scale: float = 1.0) -> MoonsNet:
    net = MoonsNet(n_heads)
    with torch.no_grad():
        for w in (net.W_phi, net.W_psi, net.W_z):
            w.zero_()
            w[..., 0] = torch.eye(3)
        net.W_phi.mul_(key_scale)
    return net


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


def test_complex_linear_is_complex_matrix_multiplication():
    w = torch.randn(3, 3, 2, dtype=torch.float64)
    x = torch.randn(5, 7, 6, dtype=torch.float64)
    wc = torch.complex(w[..., 0], w[..., 1])
    xc = torch.complex(x[..., 0::2], x[..., 1::2])
    yc = xc @ wc.T
    y = complex_linear(x, w)
    assert torch.allclose(y[..., 0::2], yc.real) and torch.allclose(y[..., 1::2], yc.imag)


@pytest.mark.parametrize("n_heads", [1, 3])
def test_54_parameters(n_heads):
    net = MoonsNet(n_heads)
    assert sum(p.numel() for p in net.parameters()) == 54
    assert [tuple(p.shape) for p in net.parameters()] == [(3, 3, 2)] * 3


@pytest.mark.parametrize("n_heads", [1, 3])
def test_forward_is_figure_3(n_heads):
    """y_T^(h) = Σ_{t<T} softmax_t(β Re⟨k_T, k_t⟩) v_t with complex arithmetic, z_T = W_z Stack_h y_T^(h)."""
    torch.manual_seed(0)
    net = MoonsNet(n_heads).double()
    x = MoonsData().sequences(VAL_COMBO, 2, torch.Generator().manual_seed(1))[:, :30].double()
    c = lambda w: torch.complex(w[..., 0], w[..., 1]).detach()  # noqa: E731
    xc = torch.complex(x[..., 0::2], x[..., 1::2])  # (B, T, 3)
    k, v = xc @ c(net.W_phi).T, xc[:, 1:] @ c(net.W_psi).T
    T, d = x.shape[1], 3 // n_heads
    z = torch.zeros(2, T, 3, dtype=torch.complex128)
    for t in range(1, T):
        ys = []
        for h in range(n_heads):
            kh, vh = k[..., h * d : (h + 1) * d], v[..., h * d : (h + 1) * d]
            scores = 50.0 * (kh[:, t, None].conj() * kh[:, :t]).real.sum(-1)
            ys.append((scores.softmax(-1)[..., None] * vh[:, :t]).sum(1))
        z[:, t] = torch.cat(ys, -1) @ c(net.W_z).T
    out = net(x)
    assert torch.allclose(out[..., 0::2], z.real, atol=1e-9) and torch.allclose(out[..., 1::2], z.imag, atol=1e-9)
    att = net.attention(x)
    assert att.shape == (2, n_heads, T, T)
    assert torch.allclose(att[:, :, 1:].sum(-1), torch.ones(2, n_heads, T - 1, dtype=att.dtype))


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


def test_clipped_loss_ignores_large_errors():
    y = torch.zeros(4)
    z = torch.tensor([0.1, -0.2, 2.0, -3.0], requires_grad=True)
    loss = clipped_loss(z, y)
    assert loss.item() == pytest.approx((0.01 + 0.04 + 0.25 + 0.25) / 4)
    loss.backward()
    assert z.grad[2] == 0 and z.grad[3] == 0 and z.grad[0] != 0


@pytest.mark.parametrize("n_heads", [1, 3])
def test_short_training_decreases_the_loss(n_heads):
    cfg = TrainConfig(iters=25, batch_size=8, short_len=64, short_frac=1.0, restarts=1, rollout_iters=0)
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
    cfg = TrainConfig(iters=4, short_len=40, short_frac=0.5, restarts=1, rollout_iters=3, rollout_context=(20, 60))
    _, losses, rollout_losses = train_net(3, seed=0, cfg=cfg)
    assert len(losses) == 4 and len(rollout_losses) == 3
    assert one_head_config(cfg).rollout_iters == 0


def test_cli_writes_a_report(tmp_path):
    import argparse

    from memory_mosaics.experiments.moons import cli

    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    flags = "--seeds 1 --heads 3 --iters 4 --short-len 40 --restarts 1 --rollout-iters 2 --eval-sequences 2"
    flags += " --curve-stride 200"
    args = parser.parse_args(["--out", str(tmp_path), *flags.split(), "--threads", "1"])
    assert cli.run(args) == 1  # four iterations do not converge: the run says so
    for name in ("report.md", "config.json", "metrics.json", "curves.csv", "fig5_3head.png", "fig10_weights_3head.png"):
        assert (tmp_path / name).exists()
    assert (tmp_path / "seeds" / "3head_seed0.json").exists()


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
        TrainConfig(**{field: value})


def test_moons_command_refuses_a_recipe_that_cannot_train(tmp_path, capsys):
    from memory_mosaics.cli import main

    assert main(["moons", "--out", str(tmp_path / "out"), "--short-frac", "1.5"]) == 2
    assert "short_frac must be in [0, 1]" in capsys.readouterr().err and not (tmp_path / "out").exists()
