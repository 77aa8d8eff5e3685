"""Windowed retrieval with adaptive bandwidth (v2): parallel and step forms against explicit softmaxes, in outputs and
gradients (queries, keys, values and the three bandwidth parameters)."""

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from memory_mosaics.ops.windowed import (
    bandwidth,
    visible_pairs,
    windowed_retrieval,
    windowed_retrieval_naive,
    windowed_retrieval_step,
)


def tensors(B: int, H: int, T: int, D: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    k = torch.randn(B, H, T, D, generator=g, dtype=torch.float64)
    k = k / k.norm(dim=-1, keepdim=True)
    v = torch.randn(B, H, T, D, generator=g, dtype=torch.float64)
    beta0 = torch.rand(H, generator=g, dtype=torch.float64) * 4
    beta1 = torch.rand(H, generator=g, dtype=torch.float64) * 4 + 0.5
    alpha = torch.rand(H, generator=g, dtype=torch.float64) * 0.9 + 0.05
    return [t.requires_grad_() for t in (k, v, beta0, beta1, alpha)]


def test_visible_pairs_and_bandwidth() -> None:
    assert visible_pairs(6, delay=1, window=3).tolist() == [0, 1, 2, 2, 2, 2]  # short-term: t-h+1 … t-1
    assert visible_pairs(6, delay=3).tolist() == [0, 0, 0, 1, 2, 3]  # long-term: 0 … t-m
    assert visible_pairs(3, delay=3, q_offset=4).tolist() == [2, 3, 4]
    beta = bandwidth(torch.tensor([1, 8]), torch.tensor([0.5]), torch.tensor([2.0]), torch.tensor([1 / 3]))
    torch.testing.assert_close(beta, torch.tensor([[2.5, 4.5]]))


@pytest.mark.parametrize(
    "T, delay, window, block",
    [(1, 1, 2, 4), (9, 1, 4, 4), (12, 0, 4, 5), (12, 0, None, 0), (40, 1, 8, 5), (70, 1, 16, 128), (33, 2, 5, 8),
     (9, 1, None, 0), (50, 7, None, 0), (5, 9, None, 0)],
)  # fmt: skip
def test_parallel_equals_explicit_softmaxes(T, delay, window, block, assert_same_outputs_and_gradients) -> None:
    k, v, b0, b1, a = tensors(2, 3, T, 4)
    kw = {"block": block} if block else {}
    out = windowed_retrieval(k, k, v, b0, b1, a, delay, window, **kw)
    ref = windowed_retrieval_naive(k, k, v, b0, b1, a, delay, window)
    assert torch.all(out[:, :, : min(delay, T)] == 0)  # an empty memory returns 0
    if delay >= T:  # every memory empty: nothing to differentiate
        assert not out.requires_grad and torch.equal(out, ref)
        return
    assert_same_outputs_and_gradients(out, ref, [k, v, b0, b1, a], tol=1e-10, grad_tol=1e-9, materialize=True)


@pytest.mark.parametrize("delay, window", [(1, 6), (4, None)])
def test_step_equals_explicit_softmaxes(delay, window, assert_same_outputs_and_gradients) -> None:
    T = 20
    k, v, b0, b1, a = tensors(2, 2, T, 4, seed=3)
    steps = []
    for t in range(T):
        lo = 0 if window is None else max(0, t - window + 1)
        hi = max(t - delay + 1, lo)
        steps.append(windowed_retrieval_step(k[:, :, t : t + 1], k[:, :, lo:hi], v[:, :, lo:hi], b0, b1, a))
    ref = windowed_retrieval_naive(k, k, v, b0, b1, a, delay, window)
    assert_same_outputs_and_gradients(
        torch.cat(steps, dim=2), ref, [k, v, b0, b1, a], tol=1e-10, grad_tol=1e-9, materialize=True
    )


def test_a_window_wider_than_the_sequence_is_the_long_term_memory_of_delay_1() -> None:
    k, v, b0, b1, a = tensors(1, 2, 30, 8)
    short = windowed_retrieval(k, k, v, b0, b1, a, 1, window=64)
    long = windowed_retrieval(k, k, v, b0, b1, a, 1)
    torch.testing.assert_close(short, long, rtol=1e-12, atol=1e-12)


def test_fp32_and_long_sequences() -> None:
    """The band runs in blocks: a sequence 32 times the window in fp32, against the fp64 reference."""
    k, v, b0, b1, a = (t.detach() for t in tensors(1, 2, 512, 16, seed=5))
    out = windowed_retrieval(k.float(), k.float(), v.float(), b0.float(), b1.float(), a.float(), 1, 16, block=64)
    ref = windowed_retrieval_naive(k, k, v, b0, b1, a, 1, 16)
    torch.testing.assert_close(out.double(), ref, rtol=1e-4, atol=1e-5)


def test_bad_windows_are_refused() -> None:
    k, v, b0, b1, a = tensors(1, 1, 4, 2)
    with pytest.raises(ValueError, match="delay"):
        windowed_retrieval(k, k, v, b0, b1, a, -1)
    with pytest.raises(ValueError, match="window"):
        windowed_retrieval(k, k, v, b0, b1, a, 2, window=2)


@pytest.mark.parametrize("delay, window, start", [(1, 6, 17), (3, None, 17), (2, 5, 3), (1, 4, 0)])
def test_offsets_continue_a_sequence(delay, window, start) -> None:
    """A chunk of queries at absolute positions start …, against a store that kept only the pairs its windows reach."""
    k, v, b0, b1, a = (t.detach() for t in tensors(1, 2, 40, 4, seed=7))
    full = windowed_retrieval(k, k, v, b0, b1, a, delay, window, block=7)
    kept = max(0, start - window + 1) if window else 0
    part = windowed_retrieval(
        k[:, :, start:], k[:, :, kept:], v[:, :, kept:], b0, b1, a, delay, window, block=5, q_offset=start,
        k_offset=kept,
    )  # fmt: skip
    torch.testing.assert_close(part, full[:, :, start:], rtol=1e-12, atol=1e-12)


class _LargestTensor(TorchDispatchMode):
    """The most elements of any tensor an aten operation returns inside it."""

    def __init__(self) -> None:
        super().__init__()
        self.numel = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        self.numel = max([self.numel, *(t.numel() for t in tree_flatten(out)[0] if isinstance(t, torch.Tensor))])
        return out


@pytest.mark.parametrize("delay, window", [(1, 16), (64, None)])
def test_no_dense_T_by_T_matrix_forward_or_backward(delay, window) -> None:
    """At T = 2048 with a window of 16, the short-term band's largest tensor is a block of queries against the keys
    its band reaches (128 × 142 per head), O(T·h) in all: no T×T mask or score matrix, in the forward or the backward
    pass; neither has the long-term memory's causal retrieval."""
    B, H, T, D, block = 1, 2, 2048, 4, 128
    k, v, b0, b1, a = (t.float().detach().requires_grad_() for t in tensors(B, H, T, D, seed=9))
    with _LargestTensor() as largest:
        windowed_retrieval(k, k, v, b0, b1, a, delay, window, block=block).sum().backward()
    band = B * H * block * (block + (window or 0))
    assert largest.numel <= max(B * H * T * D, band) < T * T // 64
    assert k.grad is not None and torch.isfinite(k.grad).all()
