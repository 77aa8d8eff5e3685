import numpy as np
import pytest

from memory_mosaics.experiments.regbench.automata import SEP, make_split
from memory_mosaics.experiments.regbench.metrics import PooledMetrics, score
from memory_mosaics.experiments.regbench.ngram import ngram_distributions


def _row(**probs: float) -> np.ndarray:
    r = np.zeros(20)
    for letter, p in probs.items():
        r["abcdefghijklmnopqr".index(letter) + 1] = p
    return r


def test_metrics_by_hand() -> None:
    q = np.stack([_row(a=0.5, b=0.5), _row(c=1.0), _row(a=1.0)])
    p = np.stack([_row(a=0.2, b=0.8), _row(a=0.6, c=0.4), np.eye(20)[SEP]])  # legal, illegal, '|' (always wrong)
    m = score([p[:2], p[2:]], [q[:2], q[2:]])  # pooled over positions, whatever the sequence split
    assert m["positions"] == 3
    assert m["accuracy"] == pytest.approx(1 / 3)
    # TVDs: ½(0.3+0.3) = 0.3; ½(0.6+0.6) = 0.6; ½(1+1) = 1
    assert m["tvd"] == pytest.approx((0.3 + 0.6 + 1.0) / 3)
    # pooling is over positions, not sequences: a one-position sequence weighs one position
    m2 = PooledMetrics()
    m2.add(p[:1], q[:1])
    m2.add(p[1:], q[1:])
    assert m2.result()["tvd"] == pytest.approx(m["tvd"])
    assert score([q], [q])["tvd"] == 0.0 and score([q], [q])["accuracy"] == 1.0
    with pytest.raises(ValueError):
        score([p], [q[:2]])


def test_ngram_by_hand() -> None:
    s = np.array([1, 2, SEP, 1, 2])  # "ab|ab": contexts "a", "ab", "ab|", "ab|a"
    two = ngram_distributions(s, 2)
    np.testing.assert_allclose(two[0], _row(a=1.0))
    # "ab": h='b' never continued, back off to unigrams a 1/3, b 1/3 ('_' counts 1/3) renormalised over {a, b}
    np.testing.assert_allclose(two[1], _row(a=0.5, b=0.5))
    # "ab|": h='_' (c=2) continued by 'a' once: 1/2; β = 1/2 goes to 'b'
    np.testing.assert_allclose(two[2], _row(a=0.5, b=0.5))
    # "ab|a": h='a' (c=2) continued by 'b' once: 1/2; β = 1/2 goes to 'a'
    np.testing.assert_allclose(two[3], _row(a=0.5, b=0.5))
    s = np.array([1, 2, SEP, 1, 3, SEP, 1, 2])  # "ab|ac|ab"
    three = ngram_distributions(s, 3)
    # context "ab|ac|a": h='_a' (c=3) continued by b once and c once: 1/3 each; β = 1/3 to 'a' (the only unseen)
    np.testing.assert_allclose(three[6], _row(a=1 / 3, b=1 / 3, c=1 / 3))
    # context "ab|ac|": h='__' (c=3) continued by 'a' twice: 2/3; β = 1/3 split over b, c by P_2(·|'_') -> unigrams
    np.testing.assert_allclose(three[5], _row(a=2 / 3, b=1 / 6, c=1 / 6))


def test_ngram_distributions_are_distributions() -> None:
    split = make_split("test", 5, seed=0)
    for n in (2, 3):
        for s in split.sequences:
            p = ngram_distributions(s, n)
            assert p.shape == (len(s) - 1, 20)
            # the back-off sums to one unless every letter seen so far has followed the history (then 1 - β stays
            # unassigned, as in the benchmark's algorithm, which does not renormalise)
            assert (p.sum(1) > 0).all() and (p.sum(1) <= 1 + 1e-12).all()
            assert np.isclose(p.sum(1), 1.0).mean() > 0.5
            assert (p[:, [0, SEP]] == 0).all()
            seen = np.maximum.accumulate(np.eye(20)[s[:-1]], axis=0) > 0
            assert (p[~seen] == 0).all()  # only letters already seen get mass
