"""The gated key extractor of Memory Mosaics v2: parallel and step forms against the naive recurrence, in outputs and
gradients; carried states; large gate pre-activations in fp32 and bf16."""

import pytest
import torch

from memory_mosaics.ops.gated import gated_keys, gated_keys_naive, gated_keys_step


def inputs(B: int, H: int, T: int, D: int, spread: float = 1.0, dtype: torch.dtype = torch.float64, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(B, H, T, D, generator=g, dtype=dtype)
    a = spread * torch.randn(B, H, T, generator=g, dtype=dtype)
    b = spread * torch.randn(B, H, T, generator=g, dtype=dtype)
    return [t.requires_grad_() for t in (x, a, b)]


def plain(state: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """k̄ = exp(s)·u: the naive form's state."""
    u, s = state
    return torch.exp(s).unsqueeze(-1) * u


def stepped(x, a, b, state=None):
    keys = []
    for t in range(x.shape[2]):
        k, state = gated_keys_step(x[:, :, t], a[:, :, t], b[:, :, t], state)
        keys.append(k)
    return torch.stack(keys, dim=2), state


@pytest.mark.parametrize("shape", [(1, 1, 1, 1), (2, 3, 7, 4), (1, 2, 33, 16), (2, 1, 100, 8)])
@pytest.mark.parametrize("chunk", [1, 8, 32])
def test_parallel_equals_the_recurrence(shape, chunk, assert_same_outputs_and_gradients) -> None:
    x, a, b = inputs(*shape)
    keys, state = gated_keys(x, a, b, chunk=chunk)
    ref, ref_state = gated_keys_naive(x, a, b)
    assert_same_outputs_and_gradients((keys, plain(state)), (ref, ref_state), [x, a, b], tol=1e-10, grad_tol=1e-9)


@pytest.mark.parametrize("shape", [(1, 1, 1, 1), (2, 3, 9, 4)])
def test_step_equals_the_recurrence(shape, assert_same_outputs_and_gradients) -> None:
    x, a, b = inputs(*shape)
    keys, state = stepped(x, a, b)
    ref, ref_state = gated_keys_naive(x, a, b)
    # the first decay multiplies an empty state: the step form never reads it (zero gradient, as the reference's)
    assert_same_outputs_and_gradients(
        (keys, plain(state)), (ref, ref_state), [x, a, b], tol=1e-10, grad_tol=1e-9, materialize=True
    )


def test_a_carried_state_continues_the_sequence(assert_same_outputs_and_gradients) -> None:
    """Any split of a sequence, in either form, gives the keys of one call; gradients flow into the state."""
    x, a, b = inputs(2, 2, 40, 8)
    whole, _ = gated_keys(x, a, b, chunk=16)
    first, state = gated_keys(x[:, :, :13], a[:, :, :13], b[:, :, :13], chunk=16)
    rest, _ = gated_keys(x[:, :, 13:], a[:, :, 13:], b[:, :, 13:], state, chunk=5)
    _, mid = stepped(x[:, :, :13], a[:, :, :13], b[:, :, :13])
    tail, _ = stepped(x[:, :, 13:], a[:, :, 13:], b[:, :, 13:], mid)
    assert_same_outputs_and_gradients(torch.cat([first, rest], 2), whole, [x, a, b], tol=1e-10, grad_tol=1e-9)
    torch.testing.assert_close(tail, whole[:, :, 13:], rtol=1e-10, atol=1e-10)
    ref, _ = gated_keys_naive(x[:, :, 13:], a[:, :, 13:], b[:, :, 13:], plain(state))
    torch.testing.assert_close(rest, ref, rtol=1e-10, atol=1e-10)


def test_gradients_by_finite_differences() -> None:
    x, a, b = inputs(1, 2, 11, 3, seed=4)
    assert torch.autograd.gradcheck(lambda x, a, b: gated_keys(x, a, b, chunk=4)[0], (x, a, b))
    u0 = torch.randn(1, 2, 3, dtype=torch.float64, requires_grad=True)
    s0 = torch.randn(1, 2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda u, s: gated_keys(x, a, b, (u, s), chunk=4)[0], (u0, s0))


@pytest.mark.parametrize("spread", [30.0, 100.0])
def test_large_gate_pre_activations_stay_finite_and_exact_in_fp32(spread: float) -> None:
    """exp(100) overflows fp32 and exp(-100) underflows it: the log-scale keeps both forms finite, and they match the
    fp64 recurrence (where those exponentials are ordinary numbers)."""
    x, a, b = inputs(2, 2, 70, 8, spread=spread, dtype=torch.float32, seed=1)
    ref, _ = gated_keys_naive(x.double(), a.double(), b.double())
    for keys in (gated_keys(x, a, b, chunk=16)[0], stepped(x, a, b)[0]):
        assert torch.isfinite(keys).all()
        torch.testing.assert_close(keys.double(), ref, rtol=1e-4, atol=1e-5)
        grads = torch.autograd.grad(keys.sum(), [x, a, b])
        assert all(torch.isfinite(g).all() for g in grads)
    with torch.no_grad():  # at ±100 the plain recurrence in fp32 overflows: what the log-scale is for
        assert spread < 100 or not torch.isfinite(gated_keys_naive(x, a, b)[0]).all()


@pytest.mark.parametrize("spread", [30.0, 100.0])
def test_bf16_accumulates_in_fp32(spread: float) -> None:
    """bf16 inputs with gate pre-activations of ±30 and ±100: both forms keep their state in fp32, return keys within
    one bf16 rounding of the fp64 recurrence, and finite gradients."""
    x, a, b = inputs(1, 2, 64, 16, spread=spread, dtype=torch.bfloat16, seed=2)
    keys, (u, s) = gated_keys(x, a, b)
    assert keys.dtype == torch.bfloat16 and u.dtype == s.dtype == torch.float32
    ref, _ = gated_keys_naive(x.double(), a.double(), b.double())
    for out in (keys, stepped(x, a, b)[0]):
        torch.testing.assert_close(out.double(), ref, rtol=1e-2, atol=1e-2)  # one rounding to bf16 of unit keys
        grads = torch.autograd.grad(out.float().sum(), [x, a, b])
        assert all(g.dtype == torch.bfloat16 and torch.isfinite(g).all() for g in grads)


def test_constant_gates_are_v1s_leaky_average_normalised() -> None:
    """g = 1 and a constant λ: v1's leaky average of eq. (6), then Norm."""
    from memory_mosaics.ops.leaky import leaky_average_naive

    x, _, _ = inputs(2, 3, 20, 4)
    beta = torch.tensor([0.5, 1.0, 3.0], dtype=torch.float64)
    a = torch.zeros(2, 3, 20, dtype=torch.float64)
    b = beta.view(1, 3, 1).expand(2, 3, 20)
    keys, _ = gated_keys(x, a, b, chunk=8)
    avg, _ = leaky_average_naive(x, beta)
    torch.testing.assert_close(keys, avg / (avg.norm(dim=-1, keepdim=True) + 1e-10), rtol=1e-12, atol=1e-12)


def test_bad_shapes_are_refused() -> None:
    x, a, b = inputs(1, 2, 5, 3)
    with pytest.raises(ValueError, match="must be"):
        gated_keys(x, a[:, :, :4], b)
    with pytest.raises(ValueError, match="chunk"):
        gated_keys(x, a, b, chunk=0)
