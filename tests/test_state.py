import copy

import pytest
import torch
from torch import nn

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
