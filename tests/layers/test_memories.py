import copy
import importlib

import pytest
import torch

from memory_mosaics.layers import MLP, ContextualMemory, MosaicBlock, MosaicBlockState, PersistentMemory
from memory_mosaics.layers.features import PARAM_GAIN, merge_heads, split_heads
from memory_mosaics.ops.leaky import scaled_leaky_keys_naive
from memory_mosaics.ops.peek import peek_values_naive
from memory_mosaics.state import ContextualState, PersistentState

features = importlib.import_module("memory_mosaics.layers.features")
contextual = importlib.import_module("memory_mosaics.layers.contextual")


@pytest.mark.parametrize("lookahead", [1, 2, 3])
def test_contextual_output_is_zero_while_the_memory_is_empty(lookahead):
    mem = ContextualMemory(16, 4, bias=False, lookahead=lookahead)
    y = mem(torch.randn(2, 10, 16))
    assert y[:, :lookahead].abs().max() == 0
    assert y[:, lookahead:].abs().min(dim=-1).values.min() > 0


def test_contextual_memory_is_causal_through_its_peeking_values():
    mem = ContextualMemory(16, 4)
    x = torch.randn(1, 12, 16)
    y = mem(x)
    for t in range(11):
        x2 = x.clone()
        x2[:, t + 1 :] = torch.randn_like(x2[:, t + 1 :])
        torch.testing.assert_close(mem(x2)[:, : t + 1], y[:, : t + 1])


def test_contextual_memory_matches_eq_7():
    """y_T = Σ_{i<T} softmax(k_T·k_i) v_i, written out with the layer's own features."""
    mem = ContextualMemory(8, 2, bias=False)
    x = torch.randn(1, 6, 8, dtype=torch.float64)
    mem.double()
    k, _ = mem.key(x)
    v = mem.value(x)
    y = torch.zeros_like(k)
    for T in range(1, 6):
        w = (k[:, :, T : T + 1] @ k[:, :, :T].transpose(-1, -2)).softmax(-1)
        y[:, :, T] = (w @ v[:, :, :T]).squeeze(2)
    torch.testing.assert_close(mem(x), mem.c_proj(merge_heads(y)))


def test_lookahead_below_one_is_refused():
    with pytest.raises(ValueError, match="leak"):
        ContextualMemory(16, 4, lookahead=0)
    with pytest.raises(ValueError, match="divisible"):
        ContextualMemory(18, 4)


@pytest.mark.parametrize("count", [1, 3])
def test_persistent_memory_is_softmax_over_its_bank(count):
    mem = PersistentMemory(8, 2, size=5, count=count, bias=False).double()
    x = torch.randn(2, 4, 8, dtype=torch.float64)
    k, _ = mem.key(x)
    y = sum((k @ mem.P_k[c].transpose(-1, -2)).softmax(-1) @ mem.P_v[c] for c in range(count)) / count
    y = y * torch.exp(PARAM_GAIN * mem.out_scale).view(1, 2, 1, 1)
    torch.testing.assert_close(mem(x), mem.c_proj(merge_heads(y)))


def _naive_keys(extractor, x: torch.Tensor) -> torch.Tensor:
    """Keys from the composition of the reference operations (no fused autograd nodes)."""
    kx = split_heads(extractor.W_k(x), extractor.n_head)
    return scaled_leaky_keys_naive(kx, extractor.decay_rate, extractor.log_scale)[0]


def _assert_same_gradients(layer, reference, x: torch.Tensor) -> None:
    w = torch.randn_like(x)
    params = [x, *layer.parameters()]
    g = torch.autograd.grad((layer(x) * w).sum(), params)
    g_ref = torch.autograd.grad((reference() * w).sum(), params)
    for a, b in zip(g, g_ref, strict=True):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("T", [5, 16, 37])
def test_persistent_memory_gradients_match_the_written_out_bank(T):
    torch.manual_seed(0)
    mem = PersistentMemory(8, 2, size=5, count=2).double()
    x = torch.randn(3, T, 8, dtype=torch.float64, requires_grad=True)

    def reference():
        k = _naive_keys(mem.key, x)
        y = sum((k @ mem.P_k[c].transpose(-1, -2)).softmax(-1) @ mem.P_v[c] for c in range(2)) / 2
        return mem.c_proj(merge_heads(y * torch.exp(PARAM_GAIN * mem.out_scale).view(1, 2, 1, 1)))

    _assert_same_gradients(mem, reference, x)


@pytest.mark.parametrize("lookahead", [1, 2])
@pytest.mark.parametrize("T", [5, 16, 37])
def test_contextual_memory_gradients_match_eq_7_written_out(T, lookahead):
    torch.manual_seed(0)
    mem = ContextualMemory(8, 2, lookahead=lookahead).double()
    x = torch.randn(3, T, 8, dtype=torch.float64, requires_grad=True)

    def reference():
        k = _naive_keys(mem.key, x)
        v = peek_values_naive(mem.value.project(x), mem.value.coef, mem.value.log_scale)
        rows = [torch.zeros_like(k[:, :, 0])] * lookahead
        for t in range(lookahead, T):
            w = (k[:, :, t : t + 1] @ k[:, :, : t - lookahead + 1].transpose(-1, -2)).softmax(-1)
            rows.append((w @ v[:, :, : t - lookahead + 1]).squeeze(2))
        return mem.c_proj(merge_heads(torch.stack(rows, dim=2)))

    _assert_same_gradients(mem, reference, x)


def test_streaming_layers_equal_full_forward():
    x = torch.randn(2, 20, 16)
    for layer, state_cls in [(ContextualMemory(16, 4), ContextualState), (PersistentMemory(16, 4, 7), PersistentState)]:
        full = layer(x)
        state = state_cls()
        parts = [layer(x[:, :7], state), layer(x[:, 7:8], state), layer(x[:, 8:], state)]
        torch.testing.assert_close(torch.cat(parts, 1), full, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("grad", [False, True])
def test_a_streamed_token_runs_the_step_forms(grad, monkeypatch):
    """After a prefill (the parallel forms), each single token goes through the step forms of the key, value and
    retrieval paths, and through no parallel form."""
    layer, x = ContextualMemory(16, 4, lookahead=2), torch.randn(2, 9, 16)
    full = layer(x)
    state = ContextualState()
    parts = [layer(x[:, :4], state)]
    calls: list[str] = []

    def spy(module, name):
        fn = getattr(module, name)
        monkeypatch.setattr(module, name, lambda *a, **k: calls.append(name) or fn(*a, **k))

    def forbid(module, name):
        monkeypatch.setattr(module, name, lambda *a, **k: pytest.fail(f"a streamed token ran {name}"))

    for module, name in ((features, "scaled_leaky_keys_step"), (features, "peek_values_step")):
        spy(module, name)
    spy(contextual, "retrieval_step")
    for module, name in ((features, "scaled_leaky_keys"), (features, "peek_values"), (contextual, "retrieval")):
        forbid(module, name)
    with torch.set_grad_enabled(grad):
        parts += [layer(x[:, t : t + 1], state) for t in range(4, 9)]
    assert sorted(set(calls)) == ["peek_values_step", "retrieval_step", "scaled_leaky_keys_step"]
    assert len(calls) == 3 * 5
    torch.testing.assert_close(torch.cat(parts, 1), full, rtol=1e-5, atol=1e-5)


@torch.no_grad()
def test_streaming_persistent_memory_keeps_its_scaled_bank_until_the_parameters_change():
    layer, x = PersistentMemory(16, 4, 7, count=2), torch.randn(2, 12, 16)
    state = PersistentState()
    torch.testing.assert_close(torch.cat([layer(x[:, :5], state), layer(x[:, 5:6], state)], 1), layer(x[:, :6]))
    bank = state.cache.get(layer, x.dtype, pytest.fail)  # kept: asking for it again builds nothing
    layer(x[:, 6:7], state)
    state.reorder(torch.tensor([1, 0]))  # beam search reorders sequences; the bank is shared by all of them
    assert state.cache.get(layer, x.dtype, pytest.fail) is bank
    state.reorder(torch.tensor([1, 0]))
    layer.P_v.data = layer.P_v.detach() * 2  # a replaced tensor (a fresh one, no version bump) reaches the next token
    torch.testing.assert_close(layer(x[:, 7:8], state), layer(x[:, :8])[:, 7:], rtol=1e-5, atol=1e-5)
    assert state.cache.get(layer, x.dtype, pytest.fail) is not bank


@pytest.mark.parametrize("kind", ["contextual", "persistent"])
@torch.no_grad()
def test_streaming_never_serves_constants_of_old_parameters(kind):
    """The per-head constants and the bank are kept from token to token; after an optimiser step on any parameter they
    come from, the next token must be what a state with an empty cache computes."""
    layer = ContextualMemory(16, 4) if kind == "contextual" else PersistentMemory(16, 4, 7)
    x = torch.randn(2, 20, 16)
    state = ContextualState() if kind == "contextual" else PersistentState()
    layer(x[:, :4], state)
    layer(x[:, 4:5], state)  # the constants are built here
    names = [name for name, _ in layer.named_parameters() if not ("W_" in name or "c_proj" in name)]
    assert len(names) == (4 if kind == "contextual" else 5)
    for t, name in enumerate(names, start=5):
        layer.get_parameter(name).add_(0.05)
        fresh = copy.deepcopy(state)  # with an empty cache
        torch.testing.assert_close(layer(x[:, t : t + 1], state), layer(x[:, t : t + 1], fresh), msg=name)


def test_block_variants():
    x = torch.randn(2, 6, 16)
    for kind, second in [("memory", PersistentMemory), ("mlp", MLP), ("none", type(None))]:
        block = MosaicBlock(16, 4, pmem_size=8, persistent=kind)
        assert isinstance(block.persistent, second)
        state = MosaicBlockState()
        torch.testing.assert_close(torch.cat([block(x[:, :3], state), block(x[:, 3:], state)], 1), block(x))
    with pytest.raises(ValueError, match="persistent"):
        MosaicBlock(16, 4, 8, persistent="ffn")
