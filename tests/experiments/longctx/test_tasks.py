"""The generated long-context tasks: invariants, hand-checked examples, labels only where they should be, seeds."""

import numpy as np
import pytest
import torch

from memory_mosaics.data.shards import FORMAT, ShardWriter, write_meta
from memory_mosaics.experiments.longctx.common import IGNORE, rng
from memory_mosaics.experiments.longctx.fewshot import FewShot
from memory_mosaics.experiments.longctx.mqar import grid, mqar
from memory_mosaics.experiments.longctx.needle import Haystack, Layout, needles, variable_tracking


def same(a, b) -> bool:
    return torch.equal(a.inputs, b.inputs) and torch.equal(a.targets, b.targets)


# ---- MQAR ----------------------------------------------------------------------------------------------------------
def test_mqar_grid_spans_the_issue():
    cells = grid()
    assert cells[0] == (64, 4) and cells[-1] == (512, 64)
    assert all(t >= 4 * n for t, n in cells) and (64, 32) not in cells and (512, 32) in cells


def test_mqar_hand_checked():
    # 2 pairs in 8 tokens leave exactly 2 query slots (offsets 4 and 6): both are used, one key each
    b = mqar(1, 8, 2, 8, rng(0))
    x, y = b.inputs[0].tolist(), b.targets[0].tolist()
    k1, v1, k2, v2 = x[:4]
    assert {k1, k2} <= {1, 2, 3} and {v1, v2} <= {4, 5, 6, 7} and k1 != k2 and v1 != v2
    assert sorted([x[4], x[6]]) == sorted([k1, k2]) and x[5] == x[7] == 0
    value = {k1: v1, k2: v2}
    assert y == [IGNORE] * 4 + [value[x[4]], IGNORE, value[x[6]], IGNORE]


@pytest.mark.parametrize(("T", "N", "V"), [(64, 4, 64), (128, 16, 128), (512, 64, 256)])
def test_mqar_invariants(T, N, V):
    b = mqar(8, T, N, V, rng(1, T))
    assert b.inputs.shape == (8, T) and int(b.inputs.min()) >= 0 and int(b.inputs.max()) < V
    for x, y in zip(b.inputs.numpy(), b.targets.numpy(), strict=True):
        keys, values = x[0 : 2 * N : 2], x[1 : 2 * N : 2]
        assert len(set(keys)) == N and keys.min() >= 1 and keys.max() < V // 2 and values.min() >= V // 2
        where = np.flatnonzero(y != IGNORE)
        assert len(where) == N and where.min() >= 2 * N and ((where - 2 * N) % 2 == 0).all()
        pair = dict(zip(keys, values, strict=True))
        assert sorted(x[where]) == sorted(keys)  # every key queried once
        assert all(y[t] == pair[x[t]] for t in where)  # its value, and only at the query
        assert all(x[t + 1] == 0 for t in where if t + 1 < T)  # the answer is never in the input
        rest = np.ones(T, bool)
        rest[: 2 * N], rest[where] = False, False
        assert (x[rest] == 0).all()


def test_mqar_gaps_follow_a_power_law():
    b = mqar(400, 256, 8, 64, rng(2))
    gaps = (b.targets != IGNORE).nonzero()[:, 1] - 16
    assert float((gaps < 60).float().mean()) > 0.4  # a uniform draw over 120 slots would put 8 of 16 ≈ 0.25 there
    assert int(gaps.max()) > 180


def test_mqar_seeded_and_checked():
    assert same(mqar(4, 64, 4, 64, rng(3)), mqar(4, 64, 4, 64, rng(3)))
    assert not same(mqar(4, 64, 4, 64, rng(3)), mqar(4, 64, 4, 64, rng(4)))
    noisy = mqar(4, 64, 4, 64, rng(3), random_filler=True)
    assert torch.equal(noisy.targets, mqar(4, 64, 4, 64, rng(3)).targets) and int((noisy.inputs == 0).sum()) < 20
    with pytest.raises(ValueError, match="4·n_kv"):
        mqar(1, 64, 32, 256, rng(0))
    with pytest.raises(ValueError, match="too small"):
        mqar(1, 512, 64, 64, rng(0))


# ---- needles and variable tracking ----------------------------------------------------------------------------------
@pytest.fixture
def shard(tmp_path):
    """A tiny dataset in the format `mosaic prepare` writes (meta.json + train.bin)."""
    tokens = np.arange(3000) % 50
    w = ShardWriter(tmp_path / "train.bin", "uint16", 50)
    w.write(tokens, documents=1)
    w.commit()
    split = {"tokens": 3000, "documents": 1}
    tokenizer = {"vocab_size": 50, "eot_id": 0}
    write_meta(tmp_path, {"format": FORMAT, "dtype": "uint16", "tokenizer": tokenizer, "splits": {"train": split}})
    return tmp_path


def test_needle_hand_checked():
    # a haystack of one repeated token makes every statement visible
    hay = Haystack.from_tokens(np.zeros(100, np.int64), 3)
    lay = Layout(3, n_keys=4, n_values=5)  # NEEDLE 3, QUERY 4, keys 5..8, values 9..13
    b = needles(1, 14, hay, rng(0), n_needles=2, n_queries=1, layout=lay)
    x, y = b.inputs[0].tolist(), b.targets[0].tolist()
    st = [i for i, t in enumerate(x) if t == 3]
    assert len(st) == 2 and x[-3] == 4 and x.count(0) == 14 - 9
    pair = {x[i + 1]: x[i + 2] for i in st}
    assert x[-1] == pair[x[-2]] and y == [IGNORE] * 12 + [x[-1], IGNORE]


def test_needles_from_a_shard(shard):
    hay = Haystack.from_shard(shard)
    b = needles(6, 200, hay, rng(1), n_needles=5, n_queries=3, key_len=2, value_len=3)
    lay = Layout(50)
    assert b.inputs.shape == (6, 200) and int(b.inputs.max()) < lay.vocab_size
    for x, y in zip(b.inputs.numpy(), b.targets.numpy(), strict=True):
        text = x[x < 50]
        assert (np.diff(text) % 50 == 1).sum() >= len(text) - 7  # real shard text, cut only by the 5 needles
        st = np.flatnonzero(x == lay.marker)
        assert len(st) == 5 and st.max() < 200 - 18
        pair = {tuple(x[i + 1 : i + 3]): tuple(x[i + 3 : i + 6]) for i in st}
        scored = np.flatnonzero(y != IGNORE)
        assert len(scored) == 9 and (y[scored] == x[scored + 1]).all()  # next-token targets on value tokens only
        for q in np.flatnonzero(x == lay.query):
            assert tuple(x[q + 3 : q + 6]) == pair[tuple(x[q + 1 : q + 3])]
            assert list(scored[(scored >= q) & (scored < q + 6)]) == [q + 2, q + 3, q + 4]


def test_variable_tracking_follows_the_chain():
    hay = Haystack.noise(20)
    lay = Layout(20)
    b = variable_tracking(16, 128, hay, rng(5), n_chains=3, hops=3, n_queries=2)
    for x, y in zip(b.inputs.numpy(), b.targets.numpy(), strict=True):
        st = np.flatnonzero(x == lay.marker)
        assert len(st) == 12
        rhs = {x[i + 1]: x[i + 2] for i in st}
        assigned_at = {x[i + 1]: i for i in st}
        scored = np.flatnonzero(y != IGNORE)
        assert len(scored) == 2 and (x[scored - 1] == lay.query).all()
        for t in scored:
            name, hops = x[t], 0
            while rhs[name] < lay.value_base:  # follow the chain back to its value
                assert assigned_at[rhs[name]] < assigned_at[name]  # a variable is assigned before it is read
                name, hops = rhs[name], hops + 1
            assert hops == 3 and y[t] == rhs[name] == x[t + 1]


def test_needle_tasks_seeded_and_checked(shard):
    hay = Haystack.from_shard(shard)
    assert same(needles(3, 100, hay, rng(7)), needles(3, 100, hay, rng(7)))
    assert not same(needles(3, 100, hay, rng(7)), needles(3, 100, hay, rng(8)))
    assert same(variable_tracking(3, 100, hay, rng(7)), variable_tracking(3, 100, hay, rng(7)))
    with pytest.raises(ValueError, match="too short"):
        needles(1, 10, hay, rng(0), n_needles=4)
    with pytest.raises(ValueError, match="cannot fill"):
        needles(1, 4000, hay, rng(0))
    with pytest.raises(ValueError, match="outside"):
        Haystack.from_tokens(np.array([0, 60]), 50)


# ---- few-shot -------------------------------------------------------------------------------------------------------
def test_fewshot_hand_checked():
    task = FewShot(n_pool=3, item_len=2, n_item_tokens=5, n_labels=3, noise=0.0)
    b = task.sample(1, 2, 2, rng(0), score_shots=True)
    x, y = b.inputs[0].tolist(), b.targets[0].tolist()
    assert len(x) == task.seq_len(2, 2) == 15
    items = [tuple(x[i : i + 2]) for i in range(0, 15, 3)]
    labels = x[2::3]
    assert all(5 <= lab < 8 for lab in labels) and all(t < 5 for it in items for t in it)
    label_of = {}
    for it, lab in zip(items, labels, strict=True):
        assert label_of.setdefault(it, lab) == lab  # noise 0: an item is its prototype, with one label per class
    assert len(label_of) == 2 and sorted(labels[:4]).count(labels[0]) == 2
    expected = [IGNORE] * 15
    for i in range(5):
        if i == 4 or items[i] in items[:i]:
            expected[3 * i + 1] = labels[i]
    assert y == expected


def test_fewshot_labels_are_anonymous_and_only_the_query_is_scored():
    task = FewShot(n_pool=16, item_len=3, n_item_tokens=32, n_labels=8, noise=0.2)
    b = task.sample(200, 4, 3, rng(1))
    x, y = b.inputs.numpy(), b.targets.numpy()
    assert (np.flatnonzero(y[0] != IGNORE) == [x.shape[1] - 2]).all() and ((y != IGNORE).sum(1) == 1).all()
    assert (y[:, -2] == x[:, -1]).all() and (y[:, -2] >= 32).all()
    # the query's label is one of this sequence's shot labels
    assert all(y[i, -2] in set(x[i, 3:-1:4]) for i in range(200))
    # the same class gets different labels in different sequences: a label says nothing outside its context
    proto = tuple(task.prototypes[0])
    seen = {int(s[j + 3]) for s in x for j in range(0, s.size - 4, 4) if tuple(s[j : j + 3]) == proto}
    assert len(seen) >= 4
    flips = np.mean(
        [tuple(x[i, j : j + 3]) not in {tuple(p) for p in task.prototypes} for i in range(50) for j in (0, 4)]
    )
    assert 0.2 < flips < 0.75  # 1 - 0.8^3 ≈ 0.49 of items differ from every prototype (a flip can redraw the same)


def test_fewshot_seeded_and_checked():
    task = FewShot()
    assert same(task.sample(4, 4, 2, rng(2)), task.sample(4, 4, 2, rng(2)))
    assert np.array_equal(task.prototypes, FewShot().prototypes)
    assert not np.array_equal(task.prototypes, FewShot(pool_seed=1).prototypes)
    assert task.sample(2, 4, 0, rng(0)).inputs.shape == (2, 5)
    with pytest.raises(ValueError, match="classes"):
        task.sample(1, 17, 1, rng(0))
