import math

import torch

from memory_mosaics.layers.features import KeyExtractor, ValueExtractor, split_heads
from memory_mosaics.ops.leaky import leaky_average_naive


def test_keys_follow_the_authors_defaults():
    phi = KeyExtractor(n_embd=16, n_head=4)
    torch.testing.assert_close(phi.decay_rate, torch.linspace(0.5, 5.0, 4))  # λ from e^-0.5 = 0.61 to e^-5 = 0.007
    x = torch.randn(2, 9, 16)
    k, last = phi(x)
    torch.testing.assert_close(k.norm(dim=-1), torch.full((2, 4, 9), math.e))  # s_h = exp(10·0.1)
    k_bar, _ = leaky_average_naive(split_heads(phi.W_k(x), 4), phi.decay_rate)
    torch.testing.assert_close(k, k_bar / k_bar.norm(dim=-1, keepdim=True) * math.e)
    torch.testing.assert_close(last, k_bar[:, :, -1])


def test_key_scale_is_clamped_and_persistent_keys_take_it_twice():
    phi = KeyExtractor(8, 2, scale_power=2)
    with torch.no_grad():
        phi.key_scale.copy_(torch.tensor([0.1, 3.0]))
    torch.testing.assert_close(phi.log_scale, torch.tensor([2.0, math.log(65535)]))


def test_values_peek_one_step_ahead():
    psi = ValueExtractor(n_embd=8, n_head=2)
    x = torch.randn(1, 5, 8)
    v = psi(x)
    u = split_heads(psi.W_v(x), 2)
    c = psi.coef.view(1, 2, 1)
    for t in range(4):
        mix = (1 - c) * u[:, :, t + 1] + c * u[:, :, t]
        torch.testing.assert_close(v[:, :, t], mix / mix.norm(dim=-1, keepdim=True) * math.exp(-0.5))
