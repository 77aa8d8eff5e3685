import pytest
import torch

from memory_mosaics.experiments.moons.data import VAL_COMBO, MoonsData
from memory_mosaics.experiments.moons.model import MoonsNet, clipped_loss, complex_linear


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


def test_clipped_loss_ignores_large_errors():
    y = torch.zeros(4)
    z = torch.tensor([0.1, -0.2, 2.0, -3.0], requires_grad=True)
    loss = clipped_loss(z, y)
    assert loss.item() == pytest.approx((0.01 + 0.04 + 0.25 + 0.25) / 4)
    loss.backward()
    assert z.grad[2] == 0 and z.grad[3] == 0 and z.grad[0] != 0
