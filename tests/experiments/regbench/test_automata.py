import numpy as np
import pytest

from memory_mosaics.experiments.regbench.automata import (
    IGNORE,
    MAX_SEQ_LEN,
    PAD,
    SEP,
    Automaton,
    decode,
    exact_distributions,
    inputs_and_labels,
    make_iid_split,
    make_split,
    pad_batch,
    sample_automaton,
)


def test_splits_are_deterministic_and_independent_of_size() -> None:
    a, b = make_split("train", 20, seed=3), make_split("train", 50, seed=3)
    for x, y in zip(a.sequences, b.sequences[:20], strict=True):  # N=20 is a prefix of N=50
        np.testing.assert_array_equal(x, y)
    for x, y in zip(a.automata, b.automata[:20], strict=True):
        np.testing.assert_array_equal(x.delta, y.delta)
    c = make_split("train", 20, seed=4)
    assert any(len(x) != len(y) or (x != y).any() for x, y in zip(a.sequences, c.sequences, strict=True))
    test = make_split("test", 20, seed=3)
    assert any(len(x) != len(y) or (x != y).any() for x, y in zip(a.sequences, test.sequences, strict=True))
    with pytest.raises(ValueError):
        make_split("dev", 1)


def test_automaton_invariants() -> None:
    rng = np.random.default_rng(0)
    sizes, alphabet_sizes = set(), set()
    for _ in range(300):
        a = sample_automaton(rng)
        assert 4 <= a.n_states <= 12
        sizes.add(a.n_states)
        edges = a.delta >= 0
        out = edges.sum(1)
        assert ((out >= 1) & (out <= 3)).all()  # every state has 1-3 outgoing edges
        assert not edges[:, [PAD, SEP]].any()  # only letters label edges
        for q in range(a.n_states):
            dest = a.delta[q][edges[q]]
            assert len(set(dest.tolist())) == len(dest)  # distinct destinations
            assert q not in dest  # no self-loops
            assert (dest < a.n_states).all()
        alphabet_sizes.add(int(edges.any(0).sum()))
    assert sizes == set(range(4, 13))  # the full 4..12 range is drawn
    assert max(alphabet_sizes) <= 18


def test_sequences_within_bounds_and_legal() -> None:
    split = make_split("val", 60, seed=1)
    counts, lengths = set(), set()
    for a, s in zip(split.automata, split.sequences, strict=True):
        assert s[0] != SEP and s[-1] != SEP and len(s) <= MAX_SEQ_LEN
        assert not (s == PAD).any()
        strings = decode(s).split("|")
        counts.add(len(strings))
        assert 10 <= len(strings) <= 19
        for w in strings:
            assert 1 <= len(w) <= 49
            lengths.add(len(w))
            assert a.accepts(np.array(["abcdefghijklmnopqr".index(c) + 1 for c in w]))
    assert min(counts) <= 11 and max(counts) >= 18 and min(lengths) <= 2 and max(lengths) >= 48


def test_labels_masked_at_separators_and_padding() -> None:
    s = np.array([1, 2, SEP, 3, SEP, 1])
    x, y = inputs_and_labels(s)
    np.testing.assert_array_equal(x, [1, 2, SEP, 3, SEP])
    np.testing.assert_array_equal(y, [2, IGNORE, 3, IGNORE, 1])
    X, Y = pad_batch([s, np.array([4, 5, 6])])
    assert X.shape == Y.shape == (2, 5)
    np.testing.assert_array_equal(X[1], [4, 5, PAD, PAD, PAD])
    np.testing.assert_array_equal(Y[1], [5, 6, IGNORE, IGNORE, IGNORE])


def test_exact_distributions() -> None:
    for a, s in zip(*vars(make_split("test", 30, seed=2)).values(), strict=True):
        q = exact_distributions(a, s)
        assert q.shape == (len(s) - 1, 20)
        np.testing.assert_allclose(q.sum(1), 1.0)
        assert (q[:, [PAD, SEP]] == 0).all()
        assert (q[np.arange(len(q)), s[1:]][s[1:] != SEP] > 0).all()  # the sampled next letter is always legal
        start = a.next_distribution(0)
        np.testing.assert_allclose(q[s[:-1] == SEP], np.broadcast_to(start, q[s[:-1] == SEP].shape))


def test_exact_distribution_by_hand() -> None:
    # 0 --a--> 1, 0 --b--> 2; 1 --c--> 0; 2 --a--> 0, 2 --c--> 1
    delta = np.full((3, 20), -1)
    delta[0, 1], delta[0, 2], delta[1, 3], delta[2, 1], delta[2, 3] = 1, 2, 0, 0, 1
    a = Automaton(delta)
    q = exact_distributions(a, np.array([2, 1, SEP, 1, 3]))  # "ba|ac"
    expected = np.zeros((4, 20))
    expected[0, [1, 3]] = 0.5  # after "b": state 2
    expected[1, [1, 2]] = 0.5  # after "ba": state 0
    expected[2, [1, 2]] = 0.5  # after "|": start state
    expected[3, 3] = 1.0  # after "a": state 1
    np.testing.assert_allclose(q, expected)
    with pytest.raises(ValueError):
        exact_distributions(a, np.array([3, 1]))  # 'c' is not legal from the start state


def test_iid_split_reuses_training_automata() -> None:
    train = make_split("train", 4, seed=0)
    test = make_iid_split(train, "test", 10, seed=0)
    assert len(test) == 10
    for i, (a, s) in enumerate(zip(test.automata, test.sequences, strict=True)):
        assert a is train.automata[i % 4]
        exact_distributions(a, s)  # raises if the sequence is not a path of its automaton
    assert not all(len(x) == len(y) and (x == y).all() for x, y in zip(test.sequences, train.sequences, strict=False))
