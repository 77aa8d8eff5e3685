"""The fused CPU kernels against the naive references (outputs and gradients of every input), and their dispatch."""

import importlib
import warnings

import pytest
import torch

from memory_mosaics.models import MemoryMosaic, MosaicConfig
from memory_mosaics.ops import kernels
from memory_mosaics.ops.leaky import scaled_leaky_keys, scaled_leaky_keys_naive
from memory_mosaics.ops.peek import peek_values, peek_values_naive
from memory_mosaics.ops.retrieval import bank_retrieval, retrieval_naive

retrieval = importlib.import_module("memory_mosaics.ops.retrieval")  # the module: ops re-exports a function of its name

# (B, T, H, D): T > 1 (one position takes the step form), odd sizes, and the head sizes the models use
SHAPES = [(1, 2, 1, 1), (2, 7, 3, 4), (2, 64, 4, 8), (1, 130, 2, 5), (3, 257, 2, 3), (2, 33, 8, 32), (1, 20, 2, 128)]
# (B, T, H, D, m) for the bank: one query, a bank of one pair, B·T around the kernel's 64-row tiles, a d = 256 bank
BANK_SHAPES = [
    (1, 1, 1, 1, 1),
    (2, 7, 3, 4, 1),
    (1, 64, 2, 8, 13),
    (1, 65, 2, 5, 7),
    (3, 43, 2, 3, 50),
    (2, 33, 8, 32, 896),
]


@pytest.fixture(autouse=True)
def built():
    """These tests need the kernels: a failed build fails them, unless the user turned the kernels off."""
    if not kernels.set_enabled(True):
        kernels.set_enabled(False)
        pytest.skip(f"{kernels.ENV}=0")
    assert kernels.extension() is not None, "the fused CPU kernels did not build"


def time_major(B, T, H, D, dtype=torch.float32):
    """(B, H, T, D) seen through a transpose of a (B, T, H, D) buffer, as split heads are."""
    return torch.randn(B, T, H, D, dtype=dtype).transpose(1, 2)


def compare(fused_fn, naive_fn, inputs, tol=2e-5):
    """Outputs of ``fused_fn`` on fp32 ``inputs`` against ``naive_fn`` on their fp64 copies, then the gradients of one
    random projection of all outputs with respect to every input."""
    leaves = [t.detach().requires_grad_() if t is not None else None for t in inputs]
    leaves64 = [t.detach().double().requires_grad_() if t is not None else None for t in inputs]
    outs, refs = fused_fn(*leaves), naive_fn(*leaves64)
    outs, refs = (outs, refs) if isinstance(outs, tuple) else ((outs,), (refs,))
    weights = [torch.randn_like(r) for r in refs]
    for a, b in zip(outs, refs, strict=True):
        assert a.dtype == torch.float32
        torch.testing.assert_close(a.double(), b, rtol=tol, atol=tol)
    used = [(a, b) for a, b in zip(leaves, leaves64, strict=True) if a is not None]
    grads = torch.autograd.grad(
        sum((o.double() * w).sum() for o, w in zip(outs, weights, strict=True)), [a for a, _ in used]
    )
    grads64 = torch.autograd.grad(sum((r * w).sum() for r, w in zip(refs, weights, strict=True)), [b for _, b in used])
    for g, g64 in zip(grads, grads64, strict=True):
        scale = g64.abs().max().clamp_min(1.0)  # per-head sums over many positions: compare relative to their size
        torch.testing.assert_close(g.double() / scale, g64 / scale, rtol=tol, atol=tol)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("with_state", [False, True])
def test_keys_kernel_matches_the_reference_in_outputs_and_gradients(shape, with_state):
    B, T, H, D = shape
    x = time_major(B, T, H, D)
    beta = torch.linspace(0.05, 5.0, H)
    log_scale = torch.linspace(-0.5, 3.0, H)
    state = torch.randn(B, H, D) if with_state else None
    assert kernels.applies(x, beta, log_scale, state)
    compare(scaled_leaky_keys, scaled_leaky_keys_naive, [x, beta, log_scale, state])


@pytest.mark.parametrize("shape", SHAPES)
def test_values_kernel_matches_the_reference_in_outputs_and_gradients(shape):
    B, T, H, D = shape
    u = time_major(B, T, H, D)
    compare(peek_values, peek_values_naive, [u, torch.rand(H), torch.randn(H)])


def bank_node(y) -> str:
    """The node that made ``y`` under the views that lay it out (B, H, T, D)."""
    node = y.grad_fn
    while type(node).__name__ in ("TransposeBackward0", "ViewBackward0", "ReshapeAliasBackward0"):
        node = node.next_functions[0][0]
    return type(node).__name__


def bank_naive(q, P_k, P_v):
    """The reference: every sequence attends to the same bank."""
    B = q.shape[0]
    return retrieval_naive(q, P_k.expand(B, -1, -1, -1), P_v.expand(B, -1, -1, -1), lookahead=None)


@pytest.mark.parametrize("shape", BANK_SHAPES)
def test_bank_kernel_matches_the_reference_in_outputs_and_gradients(shape, monkeypatch):
    monkeypatch.setattr(retrieval, "BANK_KERNEL_MIN_QUERIES", 1)  # the kernel for every shape, down to one query
    B, T, H, D, m = shape
    q = time_major(B, T, H, D)
    P_k, P_v = torch.randn(H, m, D), torch.randn(H, m, D)
    assert bank_node(bank_retrieval(q.requires_grad_(), P_k, P_v)) == "_BankRetrievalCPUBackward"
    compare(bank_retrieval, bank_naive, [q, P_k, P_v])


def test_bank_kernel_is_stable_for_large_scores():
    """Scores of several hundred (learned key scales grow) must not overflow the exp."""
    q, P_k, P_v = time_major(2, 70, 2, 8) * 40, torch.randn(2, 30, 8), torch.randn(2, 30, 8)
    compare(bank_retrieval, bank_naive, [q, P_k, P_v])


def test_kernels_keep_the_layout_of_a_projection():
    x = time_major(2, 9, 3, 4)
    k, last = scaled_leaky_keys(x, torch.rand(3), torch.zeros(3))
    assert k.transpose(1, 2).is_contiguous() and last.shape == (2, 3, 4)
    assert peek_values(x, torch.rand(3), torch.zeros(3)).transpose(1, 2).is_contiguous()
    assert bank_retrieval(x, torch.randn(3, 5, 4), torch.randn(3, 5, 4)).transpose(1, 2).is_contiguous()


def test_zero_keys_have_finite_gradients():
    x = torch.zeros(1, 5, 2, 3).transpose(1, 2).requires_grad_()
    beta = torch.tensor([0.5, 1.0], requires_grad=True)
    k, _ = scaled_leaky_keys(x, beta, torch.zeros(2))
    k.sum().backward()
    assert torch.isfinite(x.grad).all() and torch.isfinite(beta.grad).all()


@pytest.mark.parametrize(
    "make",
    [
        lambda: torch.randn(2, 3, 9, 4),  # (B, H, T, D) contiguous: not a projection's layout
        lambda: time_major(2, 9, 3, 4, torch.float64),
        lambda: time_major(2, 9, 3, 4, torch.bfloat16),
    ],
    ids=["head-major", "fp64", "bf16"],
)
def test_other_inputs_keep_the_eager_forms(make):
    x = make().requires_grad_()
    assert not kernels.applies(x)
    k, _ = scaled_leaky_keys(x, torch.rand(3, dtype=x.dtype), torch.zeros(3, dtype=x.dtype))
    assert type(k.grad_fn).__name__ == "_ScaledLeakyKeysBackward"
    y = bank_retrieval(x, torch.randn(3, 5, 4, dtype=x.dtype), torch.randn(3, 5, 4, dtype=x.dtype))
    assert bank_node(y) != "_BankRetrievalCPUBackward"


def test_turning_the_kernels_off_selects_the_eager_nodes():
    x = time_major(2, 9, 3, 4).requires_grad_()
    coef, beta = torch.rand(3), torch.rand(3)
    assert type(scaled_leaky_keys(x, beta, coef)[0].grad_fn).__name__ == "_ScaledLeakyKeysCPUBackward"
    assert type(peek_values(x, coef, beta).grad_fn).__name__ == "_PeekValuesCPUBackward"
    q, bank = time_major(2, 32, 3, 4).requires_grad_(), (torch.randn(3, 5, 4), torch.randn(3, 5, 4))
    assert bank_node(bank_retrieval(q, *bank)) == "_BankRetrievalCPUBackward"
    with kernels.disabled():
        assert type(scaled_leaky_keys(x, beta, coef)[0].grad_fn).__name__ == "_ScaledLeakyKeysBackward"
        assert type(peek_values(x, coef, beta).grad_fn).__name__ == "_PeekValuesBackward"
        assert bank_node(bank_retrieval(q, *bank)) == "ScaledDotProductFlashAttentionForCpuBackward0"


def test_streaming_queries_take_sdpa():
    """Fewer queries than one tile (a streamed token per sequence): the kernel's per-call cost would outweigh it."""
    q, bank = time_major(4, 1, 3, 4).requires_grad_(), (torch.randn(3, 5, 4), torch.randn(3, 5, 4))
    assert bank_node(bank_retrieval(q, *bank)) == "ScaledDotProductFlashAttentionForCpuBackward0"


def test_without_the_bank_kernel_the_bank_runs_on_sdpa(monkeypatch):
    """Where PyTorch has no MKL the extension is built without the bank kernel; the other kernels still serve."""
    monkeypatch.setattr(kernels, "has_bank", lambda: False)
    x = time_major(2, 33, 3, 4).requires_grad_()
    P_k, P_v = torch.randn(3, 5, 4), torch.randn(3, 5, 4)
    y = bank_retrieval(x, P_k, P_v)
    assert bank_node(y) == "ScaledDotProductFlashAttentionForCpuBackward0"
    compare(bank_retrieval, bank_naive, [x, P_k, P_v])


def test_a_failed_build_warns_once_and_falls_back(monkeypatch):
    def fail():
        raise RuntimeError("Error building extension\nc++: command not found")

    monkeypatch.setattr(kernels, "_module", None)
    monkeypatch.setattr(kernels, "_failure", None)
    monkeypatch.setattr(kernels, "_build", fail)
    x = time_major(2, 9, 3, 4).requires_grad_()
    with pytest.warns(RuntimeWarning, match="could not be built.*c\\+\\+: command not found"):
        assert not kernels.applies(x)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # once only
        k, _ = scaled_leaky_keys(x, torch.rand(3), torch.zeros(3))
    assert type(k.grad_fn).__name__ == "_ScaledLeakyKeysBackward"


def test_a_model_trains_alike_with_and_without_the_kernels(monkeypatch):
    calls = []
    build, bank = kernels.extension, kernels.bank_forward
    monkeypatch.setattr(kernels, "extension", lambda: calls.append(1) or build())
    monkeypatch.setattr(kernels, "bank_forward", lambda *a: calls.append("bank") or bank(*a))
    torch.manual_seed(0)
    config = MosaicConfig(vocab_size=50, block_size=32, n_layer=2, n_head=4, n_embd=32)
    model = MemoryMosaic(config)
    x, y = torch.randint(0, 50, (3, 32)), torch.randint(0, 50, (3, 32))

    def loss_and_grads():
        model.zero_grad(set_to_none=True)
        _, loss = model(x, y)
        loss.backward()
        return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}

    loss, grads = loss_and_grads()
    assert calls and "bank" in calls, "the model did not use the kernels"
    with kernels.disabled():
        loss_ref, grads_ref = loss_and_grads()
    torch.testing.assert_close(loss, loss_ref, rtol=1e-5, atol=1e-5)
    for name, g in grads.items():
        scale = grads_ref[name].abs().max().clamp_min(1e-3)
        torch.testing.assert_close(g / scale, grads_ref[name] / scale, rtol=1e-4, atol=1e-4, msg=name)


@pytest.mark.parametrize("with_state", [False, True])
def test_the_kernels_are_operators_torch_compile_can_trace(with_state):
    """Schemas, fake implementations (the shapes torch.compile traces with) and dispatch, by torch.library.opcheck."""
    B, T, H, D = 2, 9, 3, 4
    x, grad = torch.randn(B, T, H, D), torch.randn(B, T, H, D)
    decay, scale = torch.rand(H), torch.rand(H) + 0.5
    state = torch.randn(B, H, D) if with_state else None
    k, norm, _ = kernels.keys_forward(x, decay, scale, state)
    v, v_norm = kernels.values_forward(x, decay, scale)
    q, g, P_k, P_v = x.view(B * T, H, D), grad.view(B * T, H, D), torch.randn(H, 6, D), torch.randn(H, 6, D)
    y, lse = kernels.bank_forward(q, P_k, P_v)
    cases = [
        (kernels.keys_forward, (x, decay, scale, state)),
        (kernels.keys_backward, (grad, k, norm, decay, scale, state, torch.randn(B, H, D))),
        (kernels.values_forward, (x, decay, scale)),
        (kernels.values_backward, (grad, x, v, v_norm, decay, scale)),
        (kernels.bank_forward, (q, P_k, P_v)),
        (kernels.bank_backward, (g, q, P_k, P_v, y, lse)),
    ]
    for op, args in cases:
        torch.library.opcheck(op, args)


def test_a_compiled_model_matches_the_eager_one():
    torch.manual_seed(0)
    model = MemoryMosaic(MosaicConfig(vocab_size=50, block_size=32, n_layer=1, n_head=2, n_embd=16))
    x = torch.randint(0, 50, (2, 32))  # 64 queries: the bank kernel serves them
    _, loss = model(x, x)
    loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad(set_to_none=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _, compiled_loss = torch.compile(model)(x, x)
        compiled_loss.backward()
    assert not [w for w in caught if "does not know how to trace" in str(w.message)]  # a graph break at an extension
    torch.testing.assert_close(compiled_loss, loss)
    for name, p in model.named_parameters():
        torch.testing.assert_close(p.grad, grads[name], rtol=1e-4, atol=1e-5, msg=name)
