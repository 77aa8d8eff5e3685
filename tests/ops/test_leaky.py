import importlib

import pytest
import torch

from memory_mosaics.ops.leaky import (
    key_constants,
    leaky_average,
    leaky_average_naive,
    leaky_average_step,
    scaled_leaky_keys,
    scaled_leaky_keys_naive,
    scaled_leaky_keys_step,
    step_decay,
)

SHAPES = [(1, 1, 1, 1), (2, 3, 7, 4), (2, 4, 64, 8), (1, 2, 130, 5), (3, 2, 257, 3)]
leaky = importlib.import_module("memory_mosaics.ops.leaky")


def _inputs(shape, with_state):
    B, H, _, D = shape
    x = torch.randn(shape, dtype=torch.float64, requires_grad=True)
    beta = (torch.linspace(0.05, 5.0, H, dtype=torch.float64)).requires_grad_()
    state = torch.randn(B, H, D, dtype=torch.float64, requires_grad=True) if with_state else None
    return x, beta, state


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("chunk", [1, 4, 16, 64])
@pytest.mark.parametrize("with_state", [False, True])
def test_parallel_matches_naive_outputs_and_gradients(shape, chunk, with_state, assert_same_outputs_and_gradients):
    inputs = x, beta, state = _inputs(shape, with_state)
    out, ref = leaky_average(x, beta, state, chunk_size=chunk), leaky_average_naive(x, beta, state)
    assert_same_outputs_and_gradients(out, ref, inputs, tol=1e-10, grad_tol=1e-9, materialize=True)


@pytest.mark.parametrize("with_state", [False, True])
def test_many_chunks_carry_their_boundary_states_by_the_scan_itself(with_state, assert_same_outputs_and_gradients):
    """1,250 chunks: the boundary states recurse instead of forming a (1250 × 1250) matrix."""
    inputs = x, beta, state = _inputs((1, 2, 5000, 3), with_state)
    out, ref = leaky_average(x, beta, state, chunk_size=4)[0], leaky_average_naive(x, beta, state)[0]
    assert_same_outputs_and_gradients(out, ref, inputs, tol=1e-10, grad_tol=1e-9)


@pytest.mark.parametrize("shape", SHAPES[:3])
@pytest.mark.parametrize("with_state", [False, True])
def test_step_form_streams_the_recurrence_in_outputs_and_gradients(
    shape, with_state, assert_same_outputs_and_gradients
):
    inputs = x, beta, state = _inputs(shape, with_state)
    decay, last, steps = step_decay(beta, x.dtype), state, []
    for t in range(x.shape[2]):
        last = leaky_average_step(x[:, :, t], decay, last)
        steps.append(last)
    out, ref = (torch.stack(steps, dim=2), last), leaky_average_naive(x, beta, state)
    assert_same_outputs_and_gradients(out, ref, inputs, tol=1e-10, grad_tol=1e-9, materialize=True)


def test_the_references_use_none_of_the_other_forms(monkeypatch):
    """The naive references are independent code: with the parallel and step forms broken, they still compute."""
    x, beta, log_scale, state = _key_inputs((2, 3, 9, 4), True)
    expected = leaky_average(x, beta, state), scaled_leaky_keys(x, beta, log_scale, state)

    def broken(*args, **kwargs):
        raise AssertionError("a reference called a production form")

    for name in ("_scan", "_leaky_backward", "leaky_average", "leaky_average_step", "scaled_norm", "head_scale"):
        monkeypatch.setattr(leaky, name, broken)
    torch.testing.assert_close(leaky_average_naive(x, beta, state), expected[0])
    torch.testing.assert_close(scaled_leaky_keys_naive(x, beta, log_scale, state), expected[1])


def test_chunks_of_a_stream_equal_one_pass():
    x, beta, _ = _inputs((2, 3, 50, 4), False)
    full, _ = leaky_average(x, beta)
    a, s = leaky_average(x[:, :, :17], beta)
    b, _ = leaky_average(x[:, :, 17:], beta, s)
    torch.testing.assert_close(torch.cat([a, b], 2), full)


def test_large_decay_rates_stay_finite():
    x = torch.randn(1, 2, 300, 4)
    out, _ = leaky_average(x, torch.tensor([0.0, 80.0]))
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out[:, 1], x[:, 1])  # λ ≈ 0: no memory of the past
    torch.testing.assert_close(out[:, 0], x[:, 0].cumsum(1), rtol=1e-4, atol=1e-4)  # λ = 1: running sum


def _key_inputs(shape, with_state):
    x, beta, state = _inputs(shape, with_state)
    return x, beta, torch.linspace(-0.5, 3.0, shape[1], dtype=torch.float64).requires_grad_(), state


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("with_state", [False, True])
def test_scaled_keys_match_the_composition_in_outputs_and_gradients(
    shape, with_state, assert_same_outputs_and_gradients
):
    inputs = _key_inputs(shape, with_state)
    out, ref = scaled_leaky_keys(*inputs), scaled_leaky_keys_naive(*inputs)
    assert_same_outputs_and_gradients(out, ref, inputs, grad_tol=1e-8, materialize=True)


@pytest.mark.parametrize("shape", SHAPES[:3])
@pytest.mark.parametrize("with_state", [False, True])
def test_step_form_of_the_keys_streams_the_composition_in_outputs_and_gradients(
    shape, with_state, assert_same_outputs_and_gradients
):
    inputs = x, beta, log_scale, state = _key_inputs(shape, with_state)
    constants, last, keys = key_constants(beta, log_scale, x.dtype), state, []
    for t in range(x.shape[2]):
        k, last = scaled_leaky_keys_step(x[:, :, t : t + 1], *constants, last)
        keys.append(k)
    out, ref = (torch.cat(keys, dim=2), last), scaled_leaky_keys_naive(*inputs)
    assert_same_outputs_and_gradients(out, ref, inputs, grad_tol=1e-8, materialize=True)


def test_scaled_keys_of_a_zero_input_have_finite_gradients():
    x = torch.zeros(1, 2, 5, 3, dtype=torch.float64, requires_grad=True)
    beta = torch.tensor([0.5, 1.0], dtype=torch.float64, requires_grad=True)
    k, _ = scaled_leaky_keys(x, beta, torch.zeros(2, dtype=torch.float64))
    k.sum().backward()
    assert torch.isfinite(x.grad).all() and torch.isfinite(beta.grad).all()


def _parallel_keys(x, beta, state=None):
    return scaled_leaky_keys(x, beta, torch.full_like(beta, 2.0), state)


def _naive_keys(x, beta, state=None):
    return scaled_leaky_keys_naive(x, beta, torch.full_like(beta, 2.0), state)


@pytest.mark.parametrize("dtype, unit", [(torch.bfloat16, 2**-8), (torch.float16, 2**-11)])
@pytest.mark.parametrize("form, naive", [(leaky_average, leaky_average_naive), (_parallel_keys, _naive_keys)])
def test_half_precision_accumulates_in_fp32(dtype, unit, form, naive):
    """Outputs and gradients lie within one rounding of the exact results for the rounded inputs, and the state stays in
    fp32 (rounding every step of the recurrence to bf16 was 6 to 8 times less accurate); so does streaming."""
    g = torch.Generator().manual_seed(0)
    x, grad = (torch.randn(2, 4, 300, 16, generator=g).to(dtype) for _ in range(2))
    beta = torch.tensor([0.05, 0.007, 0.5, 2.0])

    def error(a, b):
        return ((a.double() - b).norm() / b.norm()).item()

    x64 = x.double().requires_grad_()
    ref, _ = naive(x64, beta.double())
    ref.backward(grad.double())
    xh = x.clone().requires_grad_()
    out, last = form(xh, beta)
    out.backward(grad)
    assert out.dtype == xh.grad.dtype == dtype and last.dtype == torch.float32
    assert all(c.dtype == torch.float32 for c in key_constants(beta, torch.zeros_like(beta), dtype))  # not rounded
    assert error(out, ref.detach()) < unit and error(xh.grad, x64.grad) < unit
    with torch.no_grad():  # a prefill, then steps
        head, state = form(x[:, :, :100], beta)
        steps = [head]
        for t in range(100, 300):
            k, state = form(x[:, :, t : t + 1], beta, state)
            steps.append(k)
    assert error(torch.cat(steps, 2), ref.detach()) < unit
