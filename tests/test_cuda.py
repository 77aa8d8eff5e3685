"""GPU readiness: every operation and every model gives on a CUDA device what it gives on the CPU.

What is checked, each at a tiny shape (the whole file takes seconds on a GPU, compilation included):
  * every op of ``memory_mosaics.ops`` (leaky, peek, norm, retrieval, gated, windowed; parallel and step forms): the
    outputs and the gradients of every input on CUDA equal the CPU's in fp32. The CPU side runs the fused CPU kernels
    where they apply (fp32, time-major inputs), the CUDA side the eager forms, so the two implementations meet here;
  * every model (``mosaic``, ``mosaic2``, ``gpt``, ``llama``, and variants): logits, loss and parameter gradients on
    CUDA equal the CPU's in fp32; under bf16 autocast (``memory_mosaics.devices.autocast``) the loss stays close to
    fp32 and the gradients finite;
  * streaming on CUDA: prefill and then one token at a time equals one full forward;
  * ``torch.compile`` (``mode=None``) of each architecture on CUDA gives the eager logits.

Every test is marked ``cuda`` (``pytest -m cuda tests/test_cuda.py``; ``benchmarks/gpu_check.sh`` runs them) and skipped
where ``torch.cuda.is_available()`` is False.

Dry run without a GPU: ``MM_TEST_DEVICE=cpu pytest tests/test_cuda.py`` lifts the skip and runs the same test bodies
with the CPU standing in for the device. The "device" side then runs with the fused CPU kernels off, as CUDA tensors
do, so a dry run compares the kernels against the eager forms; it checks the test logic, the signatures, the shapes and
the tolerances, not CUDA. ``MM_TEST_SKIP_COMPILE=1`` skips the ``torch.compile`` tests in such a dry run,
where compiling for the CPU takes minutes on a small machine. ``MM_TEST_DEVICE`` takes any torch device name
("cuda:1", say); the default is "cuda".
"""

from __future__ import annotations

import contextlib
import copy
import math
import os
from collections.abc import Callable, Iterator

import pytest
import torch
from torch import Tensor

from memory_mosaics.devices import autocast
from memory_mosaics.models import build_model
from memory_mosaics.ops import kernels
from memory_mosaics.ops.gated import gated_keys, gated_keys_step
from memory_mosaics.ops.leaky import (
    key_constants,
    leaky_average,
    leaky_average_step,
    scaled_leaky_keys,
    scaled_leaky_keys_step,
    step_decay,
)
from memory_mosaics.ops.norm import head_scale, head_sum, scaled_norm, scaled_norm_backward
from memory_mosaics.ops.peek import peek_values, peek_values_step, value_constants
from memory_mosaics.ops.retrieval import bank_retrieval, retrieval, retrieval_step
from memory_mosaics.ops.windowed import windowed_retrieval, windowed_retrieval_step

DEVICE = torch.device(os.environ.get("MM_TEST_DEVICE", "cuda"))
CPU = torch.device("cpu")
DRY_RUN = DEVICE.type == "cpu"  # the CPU stands in for the device: the logic runs, CUDA is not tested


def on_device() -> contextlib.AbstractContextManager[object]:
    """Around the device side of a comparison: in a dry run, the fused CPU kernels off (the eager forms, which CUDA
    tensors take); nothing on a real device. The autograd nodes are chosen in the forward pass: only it needs this."""
    return kernels.disabled() if DRY_RUN else contextlib.nullcontext()


# fp32 parity, CUDA against CPU (rtol = atol). Both sides compute the same function in fp32 (24-bit mantissa, 6e-8), but
# in different orders and kernels (cuBLAS and SDPA's CUDA kernels against MKL, the fused CPU kernels against the eager
# forms), which moves results by about 1e-6 at these shapes; 1e-4 leaves two orders of margin for that, and is still far
# below what a wrong formula, mask or offset does (1e-2 and more).
FP32_TOL = 1e-4
# fp32 gradients (rtol = atol), each compared after dividing both sides by the largest entry of the CPU gradient (at
# least 1): gradients of per-head parameters sum many terms, whose round-off grows with the sum of their magnitudes.
FP32_GRAD_TOL = 1e-4
# bf16 autocast against fp32 on the same device: the relative difference of the losses. bf16 keeps 8 mantissa bits
# (4e-3 relative), the ops accumulate in fp32 and the loss is computed from fp32 logits; 2e-2 allows a few roundings.
BF16_LOSS_RTOL = 2e-2
# torch.compile against eager on the device (rtol = atol): inductor fuses and reorders fp32 reductions (Triton on CUDA),
# the same round-off as above.
COMPILE_TOL = 1e-4


def _skip_reason() -> str:
    build = "a CPU-only build" if torch.version.cuda is None else f"built for CUDA {torch.version.cuda}"
    return (
        f"needs a CUDA GPU: torch.cuda.is_available() is False (PyTorch {torch.__version__}, {build}); "
        "MM_TEST_DEVICE=cpu dry-runs these tests on the CPU"
    )


pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(DEVICE.type == "cuda" and not torch.cuda.is_available(), reason=_skip_reason()),
]


@pytest.fixture(autouse=True)
def _exact_fp32_matmuls() -> Iterator[None]:
    """fp32 matmuls in full fp32 (no TF32 on the GPU), whatever an earlier test or the environment set."""
    before = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("highest")
    yield
    torch.set_float32_matmul_precision(before)


# ---- comparison helpers -------------------------------------------------------------------------------------------


def _flat(x: object) -> list[Tensor]:
    """The tensors of a (nested) tuple or list of tensors and Nones, in order."""
    if isinstance(x, Tensor):
        return [x]
    if isinstance(x, tuple | list):
        return [t for item in x for t in _flat(item)]
    if x is None or isinstance(x, int | float | bool):
        return []
    raise TypeError(f"unexpected {type(x).__name__} among the inputs or outputs")


def _copy(x: object, device: torch.device) -> object:
    """A fresh copy of the inputs on ``device``, with their layout (a time-major view stays time-major); tensors that
    require grad become leaves of their own."""
    if isinstance(x, Tensor):
        y = x.detach().clone().to(device)  # clone and to() both keep the strides of a dense tensor
        return y.requires_grad_() if x.requires_grad else y
    if isinstance(x, tuple | list):
        return type(x)(_copy(item, device) for item in x)
    return x


def _assert_close_scaled(actual: Tensor, expected: Tensor, tol: float, msg: str) -> None:
    """``actual`` (any device) against ``expected`` (CPU), both divided by max(|expected|, 1)."""
    scale = expected.abs().max().clamp_min(1.0) if expected.numel() else torch.tensor(1.0)
    torch.testing.assert_close(actual.cpu() / scale, expected / scale, rtol=tol, atol=tol, msg=msg)


def assert_parity(fn: Callable[..., object], *inputs: object, tol: float = FP32_TOL, grad_tol: float = FP32_GRAD_TOL):
    """``fn(*inputs)`` on DEVICE against the CPU: every output, then the gradient of one random projection of all the
    outputs that require grad with respect to every input that requires grad."""
    cpu_in, dev_in = _copy(inputs, CPU), _copy(inputs, DEVICE)
    cpu_out = _flat(fn(*cpu_in))
    with on_device():
        dev_out = _flat(fn(*dev_in))
    assert len(cpu_out) == len(dev_out) > 0
    for i, (a, b) in enumerate(zip(dev_out, cpu_out, strict=True)):
        assert a.device.type == DEVICE.type, f"output {i} left the device: {a.device}"
        assert a.dtype == b.dtype and a.shape == b.shape, f"output {i}: {a.dtype} {a.shape} against {b.dtype} {b.shape}"
        assert a.requires_grad == b.requires_grad, f"output {i}: requires_grad differs"
        torch.testing.assert_close(a.cpu(), b, rtol=tol, atol=tol, msg=lambda m, i=i: f"output {i}: {m}")
    cpu_leaves = [t for t in _flat(cpu_in) if t.requires_grad]
    dev_leaves = [t for t in _flat(dev_in) if t.requires_grad]
    pairs = [(a, b) for a, b in zip(dev_out, cpu_out, strict=True) if b.requires_grad]
    if not cpu_leaves or not pairs:
        return
    weights = [torch.randn_like(b) for _, b in pairs]
    g_cpu = torch.autograd.grad(
        sum((b * w).sum() for (_, b), w in zip(pairs, weights, strict=True)), cpu_leaves, materialize_grads=True
    )
    g_dev = torch.autograd.grad(
        sum((a * w.to(DEVICE)).sum() for (a, _), w in zip(pairs, weights, strict=True)),
        dev_leaves,
        materialize_grads=True,
    )
    for i, (a, b) in enumerate(zip(g_dev, g_cpu, strict=True)):
        assert a.device.type == DEVICE.type
        _assert_close_scaled(a, b, grad_tol, msg=f"gradient of input {i}")


def randn(*shape: int, grad: bool = True) -> Tensor:
    return torch.randn(*shape).requires_grad_(grad)


def time_major(B: int, H: int, T: int, D: int, grad: bool = True) -> Tensor:
    """(B, H, T, D) seen through a transpose of a (B, T, H, D) buffer, as split heads are (the CPU kernels' layout)."""
    return torch.randn(B, T, H, D).transpose(1, 2).requires_grad_(grad)


def per_head(H: int, low: float, high: float, grad: bool = True) -> Tensor:
    return torch.empty(H).uniform_(low, high).requires_grad_(grad)


B, H, T, D = 2, 3, 37, 8  # the ops' shape: T not a multiple of any chunk, several chunks and blocks

# ---- ops/leaky.py -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("with_state", [False, True])
@pytest.mark.parametrize("length, chunk", [(T, None), (T, 8), (70, 1)])  # 70 chunks of 1: the carry recurses
def test_leaky_average(length: int, chunk: int | None, with_state: bool) -> None:
    state = randn(B, H, D) if with_state else None
    fn = lambda x, beta, state: leaky_average(x, beta, state, chunk_size=chunk)  # noqa: E731
    assert_parity(fn, time_major(B, H, length, D), per_head(H, 0.05, 3.0), state)


@pytest.mark.parametrize("with_state", [False, True])
def test_leaky_average_step(with_state: bool) -> None:
    def steps(x: Tensor, beta: Tensor, state: Tensor | None) -> list[Tensor]:
        decay, out = step_decay(beta, x.dtype), []
        for t in range(x.shape[2]):
            state = leaky_average_step(x[:, :, t], decay, state)
            out.append(state)
        return out

    assert_parity(steps, randn(B, H, 6, D), per_head(H, 0.05, 3.0), randn(B, H, D) if with_state else None)


@pytest.mark.parametrize("with_state", [False, True])
@pytest.mark.parametrize("length", [1, T])  # one position takes the step form
def test_scaled_leaky_keys(length: int, with_state: bool) -> None:
    state = randn(B, H, D) if with_state else None
    assert_parity(scaled_leaky_keys, time_major(B, H, length, D), per_head(H, 0.05, 3.0), per_head(H, -1, 1.5), state)


@pytest.mark.parametrize("with_state", [False, True])
def test_scaled_leaky_keys_step(with_state: bool) -> None:
    def steps(x: Tensor, beta: Tensor, log_scale: Tensor, state: Tensor | None) -> list[Tensor]:
        constants, keys = key_constants(beta, log_scale, x.dtype), []
        for t in range(x.shape[2]):
            k, state = scaled_leaky_keys_step(x[:, :, t : t + 1], *constants, state)
            keys.append(k)
        return [*keys, state]

    state = randn(B, H, D) if with_state else None
    assert_parity(steps, randn(B, H, 6, D), per_head(H, 0.05, 3.0), per_head(H, -1, 1.5), state)


def test_cuda_tensors_take_the_eager_forms() -> None:
    """The fused kernels serve fp32 CPU tensors only: on the device the eager autograd nodes run."""
    if DRY_RUN:
        pytest.skip("on the CPU the fused kernels serve these tensors")
    x = time_major(B, H, T, D).to(DEVICE)
    beta, log_scale = per_head(H, 0.05, 3.0).to(DEVICE), per_head(H, -1, 1.5).to(DEVICE)
    assert not kernels.applies(x, beta, log_scale)
    assert type(scaled_leaky_keys(x, beta, log_scale)[0].grad_fn).__name__ == "_ScaledLeakyKeysBackward"
    assert type(peek_values(x, beta, log_scale).grad_fn).__name__ == "_PeekValuesBackward"


# ---- ops/peek.py --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("length", [1, 2, T])
def test_peek_values(length: int) -> None:
    assert_parity(peek_values, time_major(B, H, length, D), per_head(H, 0, 1), per_head(H, -1, 1))


def test_peek_values_step() -> None:
    def steps(u: Tensor, coef: Tensor, log_scale: Tensor) -> list[Tensor]:
        c, scale = value_constants(coef, log_scale, u.dtype)
        return [peek_values_step(u[:, :, t + 1 : t + 2], u[:, :, t : t + 1], c, scale) for t in range(u.shape[2] - 1)]

    assert_parity(steps, randn(B, H, 7, D), per_head(H, 0, 1), per_head(H, -1, 1))


# ---- ops/norm.py --------------------------------------------------------------------------------------------------


def test_scaled_norm_and_its_backward() -> None:
    def forward(x: Tensor, log_scale: Tensor) -> tuple[Tensor, Tensor]:
        return scaled_norm(x, head_scale(log_scale, x.dtype))

    def backward(grad: Tensor, x: Tensor, log_scale: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        scale = head_scale(log_scale, x.dtype)
        out, denom = scaled_norm(x, scale)
        return *scaled_norm_backward(grad, out, denom, scale), head_sum(out)

    x, log_scale = randn(B, H, T, D), per_head(H, -1, 1)
    assert_parity(forward, x, log_scale)
    assert_parity(backward, randn(B, H, T, D, grad=False), x.detach(), log_scale.detach())


# ---- ops/retrieval.py ---------------------------------------------------------------------------------------------


def _alibi(q: Tensor, k: Tensor, v: Tensor) -> Tensor:
    t = torch.arange(q.shape[2], device=q.device)
    slopes = torch.linspace(0.5, 0.05, q.shape[1], device=q.device).view(1, -1, 1, 1)
    bias = -slopes * (t[:, None] - t[None, :])
    return retrieval(q, k, v, lookahead=0, scale=q.shape[-1] ** -0.5, bias=bias)


RETRIEVALS: dict[str, tuple[Callable[..., Tensor], int]] = {  # the function and its number of (q, k, v) inputs
    # queries are the keys: the training node of a contextual memory (_SelfRetrieval)
    "self-lookahead-1": (lambda k, v: retrieval(k, k, v, lookahead=1), 2),
    "self-lookahead-3": (lambda k, v: retrieval(k, k, v, lookahead=3, scale=0.7), 2),
    "causal": (lambda q, k, v: retrieval(q, k, v, lookahead=0, scale=D**-0.5), 3),
    "lookahead-1": (lambda q, k, v: retrieval(q, k, v, lookahead=1), 3),
    "no-mask": (lambda q, k, v: retrieval(q, k[:, :, :11], v[:, :, :11], lookahead=None), 3),
    "chunk-at-offset": (lambda q, k, v: retrieval(q[:, :, :5], k, v, lookahead=1, q_offset=20), 3),
    "alibi-bias": (_alibi, 3),
}


@pytest.mark.parametrize("case", list(RETRIEVALS))
def test_retrieval(case: str) -> None:
    fn, n = RETRIEVALS[case]
    assert_parity(fn, *(time_major(B, H, T, D) for _ in range(n)))


@pytest.mark.parametrize("pairs", [0, 1, 9])
@pytest.mark.parametrize("with_bias", [False, True])
def test_retrieval_step(pairs: int, with_bias: bool) -> None:
    bias = randn(1, H, 1, pairs, grad=False) if with_bias else None
    fn = lambda q, k, v, bias: retrieval_step(q, k, v, scale=0.5, bias=bias)  # noqa: E731
    assert_parity(fn, randn(B, H, 1, D), randn(B, H, pairs, D), randn(B, H, pairs, D), bias)


@pytest.mark.parametrize("length", [1, 40])  # B·T = 80 queries: the CPU side runs its bank kernel (>= 64)
def test_bank_retrieval(length: int) -> None:
    assert_parity(bank_retrieval, time_major(B, H, length, D), randn(H, 13, D) / D**0.5, randn(H, 13, D) / D**0.5)


# ---- ops/gated.py -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("with_state", [False, True])
@pytest.mark.parametrize("chunk", [8, 32])
def test_gated_keys(chunk: int, with_state: bool) -> None:
    state = (randn(B, H, D), randn(B, H)) if with_state else None
    fn = lambda x, a, b, state: gated_keys(x, a, b, state, chunk=chunk)  # noqa: E731
    assert_parity(fn, time_major(B, H, T, D), randn(B, H, T), randn(B, H, T), state)


@pytest.mark.parametrize("with_state", [False, True])
def test_gated_keys_step(with_state: bool) -> None:
    def steps(x: Tensor, a: Tensor, b: Tensor, state: tuple[Tensor, Tensor] | None) -> list[object]:
        keys = []
        for t in range(x.shape[2]):
            k, state = gated_keys_step(x[:, :, t], a[:, :, t], b[:, :, t], state)
            keys.append(k)
        return [*keys, state]

    state = (randn(B, H, D), randn(B, H)) if with_state else None
    assert_parity(steps, randn(B, H, 6, D), randn(B, H, 6), randn(B, H, 6), state)


# ---- ops/windowed.py ----------------------------------------------------------------------------------------------

WINDOWED = {  # keyword arguments of windowed_retrieval after (query, keys, values, β0, β1, α); the query count
    "long-term": (dict(delay=3), T),
    "short-term": (dict(delay=1, window=8), T),
    "short-term-blocks": (dict(delay=1, window=8, block=16), T),  # three blocks of queries
    "split-attention-short": (dict(delay=0, window=4), T),
    "long-term-at-offset": (dict(delay=3, q_offset=20), 5),
    "short-term-at-offset": (dict(delay=1, window=8, q_offset=20, k_offset=13), 5),  # keys 13 … 36 stored
}


@pytest.mark.parametrize("case", list(WINDOWED))
def test_windowed_retrieval(case: str) -> None:
    kwargs, n_query = WINDOWED[case]
    delay, window = kwargs["delay"], kwargs.get("window")
    n_keys = T if "k_offset" not in kwargs else T - kwargs["k_offset"]

    def fn(q: Tensor, k: Tensor, v: Tensor, beta0: Tensor, beta1: Tensor, alpha: Tensor) -> Tensor:
        extra = {key: kwargs[key] for key in ("block", "q_offset", "k_offset") if key in kwargs}
        return windowed_retrieval(q[:, :, :n_query], k, v, beta0, beta1, alpha, delay, window, **extra)

    k = time_major(B, H, n_keys, D)
    assert_parity(fn, time_major(B, H, T, D), k, randn(B, H, n_keys, D), *_bandwidths())


def _bandwidths() -> tuple[Tensor, Tensor, Tensor]:
    """β0, β1, α per head, in the ranges a v2 memory keeps them."""
    return per_head(H, 0.1, 2.0), per_head(H, 0.5, 2.0), per_head(H, 0.05, 0.9)


@pytest.mark.parametrize("pairs", [0, 1, 7])
def test_windowed_retrieval_step(pairs: int) -> None:
    assert_parity(windowed_retrieval_step, randn(B, H, 1, D), randn(B, H, pairs, D), randn(B, H, pairs, D),
                  *_bandwidths())  # fmt: skip


# ---- models -------------------------------------------------------------------------------------------------------

V1 = dict(vocab_size=61, block_size=32, n_layer=2, n_head=4, n_embd=32)
V2 = dict(vocab_size=53, block_size=64, n_layer=2, n_head=2, n_embd=16, short_window=8, long_delay=4,
          long_delay_min=2, long_delay_max=8)  # fmt: skip
LLAMA = dict(vocab_size=41, block_size=32, n_layer=2, n_head=2, n_embd=16)
LLAMA_SPLIT = dict(split=True, short_window=4, long_delay=8, long_delay_min=5, long_delay_max=9)
MODEL_CASES: dict[str, tuple[str, dict[str, object]]] = {
    "mosaic": ("mosaic", V1),
    "mosaic-mlp": ("mosaic", {**V1, "persistent": "mlp"}),
    "mosaic2": ("mosaic2", V2),
    "mosaic2-memory": ("mosaic2", {**V2, "persistent": "memory"}),
    "gpt": ("gpt", {**V1, "pos": "learned"}),
    "gpt-alibi": ("gpt", {**V1, "pos": "alibi"}),
    "llama": ("llama", LLAMA),
    "llama-split": ("llama", {**LLAMA, **LLAMA_SPLIT}),
}
BATCH, LENGTH = 2, 32  # 64 queries: the CPU side of a Memory Mosaic runs its bank kernel; past v2's window (8)


def _model(case: str, **overrides: object) -> torch.nn.Module:
    """The case's model, freshly initialised on the CPU, in evaluation mode (v2 and llama: the fixed delay)."""
    arch, fields = MODEL_CASES[case]
    torch.manual_seed(0)
    return build_model(arch, **{**fields, **overrides}).eval()


def _batch(case: str) -> tuple[Tensor, Tensor]:
    vocab = MODEL_CASES[case][1]["vocab_size"]
    g = torch.Generator().manual_seed(1)
    idx = torch.randint(0, vocab, (BATCH, LENGTH + 1), generator=g)  # type: ignore[call-overload]
    return idx[:, :-1], idx[:, 1:]


@pytest.mark.parametrize("case", list(MODEL_CASES))
def test_model_fp32_parity(case: str) -> None:
    """Logits, loss and every parameter's gradient on the device equal the CPU's."""
    cpu_model = _model(case)
    dev_model = copy.deepcopy(cpu_model).to(DEVICE)
    idx, targets = _batch(case)
    logits, loss = cpu_model(idx, targets)
    with on_device():
        dev_logits, dev_loss = dev_model(idx.to(DEVICE), targets.to(DEVICE))
    assert dev_logits.device.type == DEVICE.type
    torch.testing.assert_close(dev_logits.cpu(), logits, rtol=FP32_TOL, atol=FP32_TOL)
    torch.testing.assert_close(dev_loss.cpu(), loss, rtol=FP32_TOL, atol=FP32_TOL)
    loss.backward()
    dev_loss.backward()
    for (name, p), (dev_name, dev_p) in zip(cpu_model.named_parameters(), dev_model.named_parameters(), strict=True):
        assert name == dev_name
        assert (p.grad is None) == (dev_p.grad is None), name
        if p.grad is not None:
            _assert_close_scaled(dev_p.grad, p.grad, FP32_GRAD_TOL, msg=name)


@pytest.mark.parametrize("case", list(MODEL_CASES))
def test_model_bf16_autocast(case: str) -> None:
    """Under bf16 autocast on the device the loss stays within BF16_LOSS_RTOL of fp32, and the gradients are finite."""
    model = _model(case).to(DEVICE)
    idx, targets = (t.to(DEVICE) for t in _batch(case))
    with torch.no_grad():
        _, loss32 = model(idx, targets)
    with autocast(DEVICE, torch.bfloat16):
        logits, loss = model(idx, targets)
    assert logits.dtype == torch.bfloat16 and loss.dtype == torch.float32
    assert torch.isfinite(logits).all() and torch.isfinite(loss)
    assert abs(loss.item() - loss32.item()) <= BF16_LOSS_RTOL * abs(loss32.item()), (loss.item(), loss32.item())
    loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is None or torch.isfinite(p.grad).all(), name


@pytest.mark.parametrize("case", list(MODEL_CASES))
def test_streaming_equals_one_forward(case: str) -> None:
    """On the device, a prefill of 13 tokens and then one token at a time give the logits of one full forward (the
    Memory Mosaics' memory states; the baselines' KV caches)."""
    model = _model(case).to(DEVICE)
    idx = _batch(case)[0].to(DEVICE)
    prefill = 13
    with torch.no_grad():
        full, _ = model(idx)
        state = model.init_state()
        parts = [model(idx[:, :prefill], state=state)[0]]
        parts += [model(idx[:, t : t + 1], state=state)[0] for t in range(prefill, idx.shape[1])]
    streamed = torch.cat(parts, dim=1)
    assert streamed.device.type == DEVICE.type and state.position == idx.shape[1]
    torch.testing.assert_close(streamed, full, rtol=FP32_TOL, atol=FP32_TOL)


@pytest.mark.parametrize("case", ["mosaic", "mosaic2", "gpt", "llama"])
def test_torch_compile_matches_eager(case: str) -> None:
    """One forward of the compiled model (mode=None, autograd on: the training graph) gives the eager logits."""
    if DRY_RUN and os.environ.get("MM_TEST_SKIP_COMPILE", "0") not in ("", "0"):
        pytest.skip("MM_TEST_SKIP_COMPILE: compiling for the CPU is slow on a small machine")
    model = _model(case, n_layer=1).to(DEVICE)
    idx, targets = (t.to(DEVICE) for t in _batch(case))
    logits, loss = model(idx, targets)
    torch._dynamo.reset()  # a fresh cache for each model: no recompilation limit across the cases
    compiled_logits, compiled_loss = torch.compile(model, mode=None)(idx, targets)
    assert compiled_logits.device.type == DEVICE.type
    torch.testing.assert_close(compiled_logits, logits, rtol=COMPILE_TOL, atol=COMPILE_TOL)
    assert math.isclose(compiled_loss.item(), loss.item(), rel_tol=COMPILE_TOL, abs_tol=COMPILE_TOL)
