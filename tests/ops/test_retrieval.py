import pytest
import torch

from memory_mosaics.ops import kernels
from memory_mosaics.ops.retrieval import (
    bank_retrieval,
    gaussian_retrieval_naive,
    retrieval,
    retrieval_naive,
    retrieval_step,
)


def _qkv(B=2, H=3, T=9, D=4, dtype=torch.float64):
    return [torch.randn(B, H, T, D, dtype=dtype, requires_grad=True) for _ in range(3)]


@pytest.mark.parametrize("T", [1, 2, 5, 33])
@pytest.mark.parametrize("lookahead", [0, 1, 2, 3])
@pytest.mark.parametrize("D", [1, 8])
def test_parallel_matches_naive_outputs_and_gradients(T, lookahead, D, assert_same_outputs_and_gradients):
    _, k, v = _qkv(T=T, D=D)
    ref = retrieval_naive(k, k, v, lookahead, scale=0.7)
    out = retrieval(k, k, v, lookahead, scale=0.7)
    if not out.requires_grad:  # every query sees an empty memory: a constant zero output
        torch.testing.assert_close(out, ref)
        assert lookahead >= T and out.abs().max() == 0
        return
    assert_same_outputs_and_gradients(out, ref, (k, v), materialize=True)


@pytest.mark.parametrize("offset", [0, 1, 4, 9])
@pytest.mark.parametrize("n_query", [1, 3, 7])
@pytest.mark.parametrize("lookahead", [0, 1, 2])
def test_chunk_of_queries_at_an_offset(offset, n_query, lookahead, assert_same_outputs_and_gradients):
    _, k, v = _qkv(T=offset + n_query)
    q = torch.randn(2, 3, n_query, 4, dtype=torch.float64, requires_grad=True)
    ref = retrieval_naive(q, k, v, lookahead, q_offset=offset)
    out = retrieval(q, k, v, lookahead, q_offset=offset)
    if not out.requires_grad:
        torch.testing.assert_close(out, ref)
        assert offset + n_query <= lookahead and out.abs().max() == 0
        return
    assert_same_outputs_and_gradients(out, ref, (q, k, v), materialize=True)


def test_first_positions_see_an_empty_memory():
    _, k, v = _qkv(T=6)
    for s in (1, 2, 3):
        out = retrieval(k, k, v, s)
        assert out[:, :, :s].abs().max() == 0
        assert out[:, :, s:].abs().min() > 0


@pytest.mark.parametrize("T", [2, 5, 12])
@pytest.mark.parametrize("D", [1, 8])
def test_step_form_against_the_stored_pairs_in_outputs_and_gradients(T, D, assert_same_outputs_and_gradients):
    _, k, v = _qkv(T=T, D=D)
    ref = retrieval_naive(k, k, v, 1)
    out = torch.cat([retrieval_step(k[:, :, t : t + 1], k[:, :, :t], v[:, :, :t]) for t in range(T)], dim=2)
    assert_same_outputs_and_gradients(out, ref, (k, v))


@pytest.mark.parametrize("T", [1, 4, 11])
@pytest.mark.parametrize("lookahead", [0, 1, 2])
def test_step_form_with_a_bias_streams_like_the_parallel_form(T, lookahead, assert_same_outputs_and_gradients):
    """The GPT's ALiBi stream: one query at a time, against the pairs it may see, with its row of the bias."""
    q, k, v = _qkv(T=T)
    bias = torch.randn(3, T, T, dtype=torch.float64)
    ref = retrieval_naive(q, k, v, lookahead, bias=bias)
    rows = []
    for t in range(T):
        n = max(0, t + 1 - lookahead)
        rows.append(retrieval_step(q[:, :, t : t + 1], k[:, :, :n], v[:, :, :n], bias=bias[:, t : t + 1, :n]))
    out = torch.cat(rows, dim=2)
    if lookahead >= T:
        assert out.abs().max() == 0 and ref.abs().max() == 0
        return
    assert_same_outputs_and_gradients(out, ref, (q, k, v), materialize=True)


def test_step_form_applies_dropout_to_its_weights():
    q, k, v = _qkv(T=40)
    torch.manual_seed(1)
    a = retrieval_step(q[:, :, -1:], k, v, dropout_p=0.5)
    torch.manual_seed(1)
    b = retrieval_step(q[:, :, -1:], k, v, dropout_p=0.5)
    torch.testing.assert_close(a, b)
    assert not torch.allclose(a, retrieval_step(q[:, :, -1:], k, v))


def test_additive_bias_matches_naive():
    q, k, v = _qkv(T=10)
    bias = torch.randn(3, 10, 10, dtype=torch.float64)
    torch.testing.assert_close(retrieval(q, k, v, 0, bias=bias), retrieval_naive(q, k, v, 0, bias=bias))
    q1 = q[:, :, 6:]
    torch.testing.assert_close(
        retrieval(q1, k, v, 0, q_offset=6, bias=bias[:, 6:]), retrieval_naive(q1, k, v, 0, q_offset=6, bias=bias[:, 6:])
    )


def test_no_mask_attends_to_the_whole_bank():
    q = torch.randn(2, 3, 5, 4, dtype=torch.float64)
    bank_k, bank_v = torch.randn(2, 3, 11, 4, dtype=torch.float64), torch.randn(2, 3, 11, 4, dtype=torch.float64)
    torch.testing.assert_close(retrieval(q, bank_k, bank_v, None), retrieval_naive(q, bank_k, bank_v, None))


@pytest.mark.parametrize("B, T, m", [(1, 1, 1), (2, 7, 5), (3, 30, 11)])
def test_bank_retrieval_matches_the_reference_in_outputs_and_gradients(B, T, m, assert_same_outputs_and_gradients):
    """Every sequence attends to the same bank (the eager form here: the kernel's tests are in test_kernels)."""
    q = torch.randn(B, 3, T, 4, dtype=torch.float64, requires_grad=True)
    P_k, P_v = (torch.randn(3, m, 4, dtype=torch.float64, requires_grad=True) for _ in range(2))
    ref = retrieval_naive(q, P_k.expand(B, -1, -1, -1), P_v.expand(B, -1, -1, -1), lookahead=None)
    with kernels.disabled():
        out = bank_retrieval(q, P_k, P_v)
    assert_same_outputs_and_gradients(out, ref, (q, P_k, P_v))


def test_the_references_use_no_attention_kernel(monkeypatch):
    """The naive references are independent code: with SDPA broken, they still compute."""
    q, k, v = _qkv(T=9)
    expected = retrieval(q, k, v, 1, scale=0.5), retrieval(k, k, v, 2, scale=3.0)

    def broken(*args, **kwargs):
        raise AssertionError("a reference called a production form")

    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", broken)
    torch.testing.assert_close(retrieval_naive(q, k, v, 1, scale=0.5), expected[0])
    k1 = torch.nn.functional.normalize(k, dim=-1)
    torch.testing.assert_close(
        gaussian_retrieval_naive(k1, k1, v, 3.0, lookahead=2), retrieval_naive(k1, k1, v, 2, 3.0)
    )
    with pytest.raises(AssertionError, match="production"):
        retrieval(k, k, v, 2, scale=3.0)


def test_gaussian_kernel_smoothing_equals_softmax_for_unit_norm_keys():
    """Eq. (2) with keys of a shared norm is eq. (3): the paper's bridge from kernel regression to attention."""
    k = torch.nn.functional.normalize(torch.randn(2, 3, 15, 4, dtype=torch.float64), dim=-1)
    v = torch.randn(2, 3, 15, 4, dtype=torch.float64)
    beta = 7.4
    torch.testing.assert_close(gaussian_retrieval_naive(k, k, v, beta), retrieval(k, k, v, 1, scale=beta))


def test_memory_too_short_is_an_error():
    q, k, v = _qkv(T=4)
    with pytest.raises(ValueError, match="needs"):
        retrieval(q, k[:, :, :2], v[:, :, :2], 1)
    with pytest.raises(ValueError, match="lookahead"):
        retrieval(q, k, v, -1)


def test_self_retrieval_supports_retain_graph_and_checkpointing():
    """The training form keeps its inner graph as saved tensors: a second backward pass through a retained graph gives
    the same gradients, and activation checkpointing (which drops and recomputes saved tensors) matches too."""
    _, k, v = _qkv(T=12)
    w = torch.randn(2, 3, 12, 4, dtype=torch.float64)
    loss = (retrieval(k, k, v, 1) * w).sum()
    first = torch.autograd.grad(loss, (k, v), retain_graph=True)
    second = torch.autograd.grad(loss, (k, v))
    with pytest.raises(RuntimeError, match="freed"):  # without retain_graph the inner graph goes with the node's
        _ = loss.grad_fn.next_functions[0][0].next_functions[0][0].saved_tensors
    ref = torch.autograd.grad((retrieval_naive(k, k, v, 1) * w).sum(), (k, v))
    for a, b, r in zip(first, second, ref, strict=True):
        torch.testing.assert_close(a, r)
        torch.testing.assert_close(b, r)
    out = torch.utils.checkpoint.checkpoint(lambda a, b: retrieval(a, a, b, 1), k, v, use_reentrant=False)
    for a, r in zip(torch.autograd.grad((out * w).sum(), (k, v)), ref, strict=True):
        torch.testing.assert_close(a, r)
