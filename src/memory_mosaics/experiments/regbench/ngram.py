"""In-context n-gram baselines with back-off (§7; Akyürek et al.'s "Algorithm 1"): no training, counts only.

At position t the context is s_0..s_t. Each of its strings (split on '|'; the last, possibly empty, is the current one)
is left-padded with N−1 '_' and all n-grams n = 1..N inside it are counted. With V the letters seen so far and h the
last N−1 symbols of the padded current string:

    P_N(a|h) = c(h·a) / c(h)                                          if c(h·a) > 0
             = β · P_{N−1}(a|h[1:]) / Σ_{b∈V unseen after h} P_{N−1}(b|h[1:])   otherwise,
    β = 1 − Σ_{b seen after h} c(h·b) / c(h),

and P_1(a) = c(a) / Σ c(unigrams) with '_' counted in the denominator. Counts are kept incrementally, so one pass over
a sequence gives every position's distribution.
"""

from __future__ import annotations

from collections import Counter

import numpy as np

from memory_mosaics.experiments.regbench.automata import LETTERS, SEP, VOCAB_SIZE

PAD_SYMBOL = "_"


class _Counts:
    def __init__(self, order: int) -> None:
        self.order = order
        self.counts: Counter[str] = Counter()  # every n-gram, n = 1..order, keyed by its string
        self.unigram_total = 0
        self.vocab: list[str] = []  # letters seen so far, in order of first appearance
        self.current = ""

    def start_string(self) -> None:
        self.current = PAD_SYMBOL * (self.order - 1)
        for n in range(1, self.order):  # n-grams inside the padding alone
            self.counts[PAD_SYMBOL * n] += self.order - n
        self.unigram_total += self.order - 1

    def append(self, letter: str) -> None:
        if letter not in self.counts:
            self.vocab.append(letter)
        self.current += letter
        for n in range(1, self.order + 1):  # the n-grams that end at the new letter
            if len(self.current) >= n:
                self.counts[self.current[-n:]] += 1
        self.unigram_total += 1

    def distribution(self, n: int, history: str) -> dict[str, float]:
        """P_n(·|history) over the letters seen so far."""
        if n == 1:
            return {a: self.counts[a] / self.unigram_total for a in self.vocab}
        c_h = self.counts[history]  # > 0: the history ends the current (padded) string, so it is always counted
        probs, unseen = {}, []
        for a in self.vocab:
            c = self.counts.get(history + a, 0)
            if c:
                probs[a] = c / c_h
            else:
                unseen.append(a)
        if unseen:
            beta = 1.0 - sum(probs.values())
            lower = self.distribution(n - 1, history[1:])
            z = sum(lower[b] for b in unseen)
            for b in unseen:
                probs[b] = beta * lower[b] / z
        return probs


def ngram_distributions(tokens: np.ndarray, order: int) -> np.ndarray:
    """The in-context ``order``-gram distribution at every model input position t = 0..L-2 (context s_0..s_t), as
    (L-1, VOCAB_SIZE) rows over the 20-token vocabulary (zero outside the letters seen so far)."""
    if order < 1:
        raise ValueError(f"order must be >= 1, got {order}")
    state = _Counts(order)
    state.start_string()
    out = np.zeros((len(tokens) - 1, VOCAB_SIZE))
    for t, tok in enumerate(tokens[:-1]):
        if tok == SEP:
            state.start_string()
        else:
            state.append(LETTERS[tok - 1])
        history = state.current[len(state.current) - (order - 1) :] if order > 1 else ""
        for a, p in state.distribution(order, history).items():
            out[t, LETTERS.index(a) + 1] = p
    return out
