import torch

from memory_mosaics.state import PairStore


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
