import copy

import pytest
import torch
from torch import nn

from memory_mosaics.models import GPT, GPTConfig, MemoryMosaic, MosaicConfig
from memory_mosaics.state import PairStore, ParamCache


def test_pair_store_grows_by_doubling_and_keeps_its_content():
    store = PairStore()
    chunks = [torch.randn(2, 3, n, 4) for n in (5, 1, 1, 7, 1)]
    with torch.no_grad():
        for c in chunks:
            store.append(c)
    torch.testing.assert_close(store.data, torch.cat(chunks, 2))
    assert store.length == 15


def test_pair_store_keeps_gradients_when_autograd_is_on():
    a = torch.randn(1, 1, 3, 2, requires_grad=True)
    store = PairStore()
    store.append(a)
    store.append(a * 2)
    store.data.sum().backward()
    torch.testing.assert_close(a.grad, torch.full_like(a, 3.0))


def test_reorder_selects_batch_rows():
    store = PairStore()
    x = torch.arange(6.0).view(3, 1, 2, 1)
    with torch.no_grad():
        store.append(x)
    store.reorder(torch.tensor([2, 2, 0]))
    torch.testing.assert_close(store.data, x[[2, 2, 0]])


def test_param_cache_rebuilds_for_changed_parameters_and_dtypes_and_keeps_nothing_under_autograd():
    layer, cache, built = nn.Linear(3, 2), ParamCache(), []

    def make():
        built.append(layer.weight * 2)
        return built[-1]

    with torch.no_grad():
        first = cache.get(layer, torch.float32, make)
        assert cache.get(layer, torch.float32, pytest.fail) is first
        layer.bias.add_(1)  # any of the module's own parameters, in place
        assert cache.get(layer, torch.float32, make) is not first
        layer.weight.data = torch.zeros(2, 3)  # or replaced
        torch.testing.assert_close(cache.get(layer, torch.float32, make), torch.zeros(2, 3))
        cache.get(layer, torch.float64, make)  # another dtype
        other = nn.Linear(3, 2)
        assert cache.get(other, torch.float64, lambda: "other") == "other"  # one entry per module
        assert len(built) == 4
    out = cache.get(layer, torch.float64, make)
    assert len(built) == 5 and out.requires_grad  # autograd on: built afresh, in the graph
    with torch.no_grad():
        assert copy.deepcopy(cache).get(layer, torch.float64, lambda: "rebuilt") == "rebuilt"  # a copy starts empty


def _streaming_model(kind: str, n_layer: int = 2) -> nn.Module:
    shape = dict(vocab_size=20, block_size=16, n_layer=n_layer, n_head=2, n_embd=8)
    return (MemoryMosaic(MosaicConfig(**shape)) if kind == "mosaic" else GPT(GPTConfig(**shape))).eval()


def test_param_cache_can_derive_an_entry_from_other_modules_parameters():
    holder, a, b, cache = nn.Identity(), nn.Linear(2, 2), nn.Linear(2, 3), ParamCache()
    params = [*a.parameters(), *b.parameters()]
    with torch.no_grad():
        first = cache.get(holder, torch.float32, lambda: torch.cat([a.weight, b.weight]), params)
        assert cache.get(holder, torch.float32, pytest.fail, params) is first
        b.bias.add_(1)  # any of them changing rebuilds it
        assert cache.get(holder, torch.float32, lambda: "rebuilt", params) == "rebuilt"


@pytest.mark.parametrize("kind", ["mosaic", "gpt"])
def test_a_state_continues_only_its_own_model_and_sequences(kind):
    model, other = _streaming_model(kind), _streaming_model("gpt" if kind == "mosaic" else "mosaic")
    state = model.init_state()
    with torch.no_grad():
        model(torch.randint(0, 20, (2, 5)), state=state)
        with pytest.raises(ValueError, match="holds 2 sequences but idx has 3 rows"):
            model(torch.randint(0, 20, (3, 1)), state=state)
        for stranger in (_streaming_model(kind, n_layer=3), other):
            with pytest.raises(ValueError, match="init_state"):
                stranger(torch.randint(0, 20, (2, 1)), state=state)
        state.reorder(torch.tensor([1, 1, 0]))  # selecting sequences changes the batch
        assert model(torch.randint(0, 20, (3, 1)), state=state)[0].shape == (3, 1, 20)
