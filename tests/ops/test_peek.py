import importlib

import pytest
import torch

from memory_mosaics.ops.peek import peek_values, peek_values_naive, peek_values_step, value_constants

peek = importlib.import_module("memory_mosaics.ops.peek")


def _inputs(shape):
    u = torch.randn(shape, dtype=torch.float64, requires_grad=True)
    coef = torch.rand(shape[1], dtype=torch.float64, requires_grad=True)
    log_scale = torch.randn(shape[1], dtype=torch.float64, requires_grad=True)
    return u, coef, log_scale


SHAPES = [(1, 1, 1, 1), (2, 3, 2, 4), (2, 4, 33, 8)]


@pytest.mark.parametrize("shape", SHAPES)
def test_training_form_matches_the_composition_in_outputs_and_gradients(shape, assert_same_outputs_and_gradients):
    inputs = _inputs(shape)
    assert_same_outputs_and_gradients(peek_values(*inputs), peek_values_naive(*inputs), inputs)


@pytest.mark.parametrize("shape", SHAPES[1:])
def test_step_form_matches_the_composition_in_outputs_and_gradients(shape, assert_same_outputs_and_gradients):
    inputs = u, coef, log_scale = _inputs(shape)
    constants = value_constants(coef, log_scale, u.dtype)
    steps = [peek_values_step(u[:, :, t + 1 : t + 2], u[:, :, t : t + 1], *constants) for t in range(shape[2] - 1)]
    v_ref = peek_values_naive(*inputs)[:, :, :-1]  # the last value waits for the next token
    v = torch.cat(steps, dim=2)
    assert_same_outputs_and_gradients(v, v_ref, inputs)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_evaluation_takes_the_training_form(dtype):
    """Without autograd the values come from the same parallel form, bit for bit."""
    u, coef, log_scale = (t.detach().to(dtype) for t in _inputs((2, 3, 17, 8)))
    with torch.no_grad():
        v = peek_values(u, coef, log_scale)
    assert torch.equal(v, peek_values(u, coef.requires_grad_(), log_scale).detach())


def test_the_reference_uses_none_of_the_other_forms(monkeypatch):
    inputs = _inputs((2, 3, 9, 4))
    expected = peek_values(*inputs)

    def broken(*args, **kwargs):
        raise AssertionError("the reference called a production form")

    for name in ("_PeekValues", "peek_values_step", "value_constants", "scaled_norm", "head_scale"):
        monkeypatch.setattr(peek, name, broken)
    torch.testing.assert_close(peek_values_naive(*inputs), expected)


def test_value_t_peeks_at_t_plus_one_only():
    u = torch.randn(1, 2, 6, 3, dtype=torch.float64)
    coef, log_scale = torch.rand(2, dtype=torch.float64), torch.zeros(2, dtype=torch.float64)
    v = peek_values(u, coef, log_scale)
    u2 = u.clone()
    u2[:, :, 4:] += 1.0  # changing u_4, u_5 changes v_3, v_4, v_5 and nothing before
    v2 = peek_values(u2, coef, log_scale)
    torch.testing.assert_close(v2[:, :, :3], v[:, :, :3])
    assert not torch.allclose(v2[:, :, 3], v[:, :, 3])
