"""RegBench (Akyürek et al., 2024): random probabilistic finite automata, their token sequences, and the exact
next-symbol distribution at every position (``docs/regbench.md`` §1–§3).

An automaton is a deterministic transition table over the 20-token vocabulary; every state has 1–3 outgoing edges, each
taken with probability 1/|out(q)|. The benchmark's ``pythomata`` minimisation and trimming are skipped: the next-symbol
distribution depends on the language alone (§1), so they change neither the sequences' law nor the metrics.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# vocabulary sorted by ASCII, as in the benchmark: '.' = pad (0), 'a'..'r' = 1..18, '|' = separator (19)
PAD, SEP = 0, 19
LETTERS = "abcdefghijklmnopqr"
VOCAB = "." + LETTERS + "|"
VOCAB_SIZE = len(VOCAB)
LETTER_IDS = np.arange(1, 19)
IGNORE = -1  # label value the models' loss ignores

# numpy ``integers(low, high)`` excludes ``high``: these are the benchmark's half-open ranges
STATES = (4, 13)  # 4..12 states
ALPHABET = (4, 19)  # 4..18 letters drawn for the automaton
EDGES = (1, 4)  # 1..3 outgoing edges per state
STRINGS = (10, 20)  # 10..19 strings per sequence
STRING_LEN = (1, 50)  # 1..49 symbols per string
MAX_SEQ_LEN = (STRINGS[1] - 1) * (STRING_LEN[1] - 1) + STRINGS[1] - 2  # 949 tokens, so at most 948 model inputs

SPLITS = {"train": 0, "val": 1, "test": 2}


@dataclass(frozen=True)
class Automaton:
    """``delta[q, token]`` is the next state, or -1 where state ``q`` has no edge labelled ``token``; start state 0."""

    delta: np.ndarray  # (n_states, VOCAB_SIZE) int

    @property
    def n_states(self) -> int:
        return self.delta.shape[0]

    def next_distribution(self, state: int) -> np.ndarray:
        """P(next token | state) over the 20-token vocabulary: uniform over the state's outgoing edge labels."""
        legal = self.delta[state] >= 0
        return legal / legal.sum()

    def accepts(self, letters: np.ndarray) -> bool:
        """Whether ``letters`` (token ids) is a path from the start state (every state accepts)."""
        q = 0
        for a in letters:
            q = self.delta[q, a]
            if q < 0:
                return False
        return True


def sample_automaton(rng: np.random.Generator) -> Automaton:
    """Spec §1: 4–12 states, a random 4–18 letter alphabet, 1–3 edges per state with distinct labels and distinct
    destinations other than the state itself."""
    n = int(rng.integers(*STATES))
    k = int(rng.integers(*ALPHABET))
    alphabet = rng.choice(LETTER_IDS, size=k, replace=False)
    delta = np.full((n, VOCAB_SIZE), -1, dtype=np.int64)
    for q in range(n):
        m = int(rng.integers(*EDGES))
        symbols = rng.choice(alphabet, size=m, replace=False)
        others = np.array([s for s in range(n) if s != q])
        delta[q, symbols] = rng.choice(others, size=m, replace=False)
    return Automaton(delta)


def sample_sequence(automaton: Automaton, rng: np.random.Generator) -> np.ndarray:
    """Spec §2: 10–19 strings of 1–49 symbols walked from the start state, joined by '|' (none leading or trailing)."""
    tokens: list[int] = []
    for i in range(int(rng.integers(*STRINGS))):
        if i:
            tokens.append(SEP)
        q = 0
        for _ in range(int(rng.integers(*STRING_LEN))):
            legal = np.flatnonzero(automaton.delta[q] >= 0)
            a = int(legal[rng.integers(len(legal))])
            tokens.append(a)
            q = int(automaton.delta[q, a])
    return np.array(tokens, dtype=np.int64)


def exact_distributions(automaton: Automaton, tokens: np.ndarray) -> np.ndarray:
    """q_t for every model input position t = 0..L-2 (§4): the automaton's next-symbol distribution after the
    current partial string (the symbols since the last '|', up to and including s_t). Shape (L-1, VOCAB_SIZE)."""
    table = np.stack([automaton.next_distribution(q) for q in range(automaton.n_states)])
    states = np.empty(len(tokens) - 1, dtype=np.int64)
    q = 0
    for t, a in enumerate(tokens[:-1]):
        q = 0 if a == SEP else int(automaton.delta[q, a])
        if q < 0:
            raise ValueError(f"token {VOCAB[a]!r} at position {t} is not a legal continuation")
        states[t] = q
    return table[states]


def inputs_and_labels(tokens: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Model input s_0..s_{L-2} and label s_1..s_{L-1}; labels equal to '|' are ignored (§2: the model is never
    trained to predict the end of a string)."""
    x, y = tokens[:-1].copy(), tokens[1:].copy()
    y[y == SEP] = IGNORE
    return x, y


@dataclass
class Split:
    """One split: an automaton and one fixed sequence per automaton (§3)."""

    automata: list[Automaton]
    sequences: list[np.ndarray]

    def __len__(self) -> int:
        return len(self.sequences)

    def distributions(self) -> list[np.ndarray]:
        return [exact_distributions(a, s) for a, s in zip(self.automata, self.sequences, strict=True)]


def make_split(name: str, size: int, seed: int = 0) -> Split:
    """``size`` automata of split ``name`` with one sequence each. Automaton i is drawn from its own generator seeded by
    (seed, split, i), so the val and test sets do not depend on the training-set size N, and the first N training
    automata are the same for every N (N = 100 is a subset of N = 500)."""
    if name not in SPLITS:
        raise ValueError(f"split must be one of {sorted(SPLITS)}, got {name!r}")
    automata, sequences = [], []
    for i in range(size):
        rng = np.random.default_rng([seed, SPLITS[name], i])
        a = sample_automaton(rng)
        automata.append(a)
        sequences.append(sample_sequence(a, rng))
    return Split(automata, sequences)


def make_iid_split(train: Split, name: str, size: int, seed: int = 0) -> Split:
    """Appendix D.5 (Table 3): fresh sequences from the *training* automata (automaton i % N for sequence i), to test
    in distribution. Sequence i uses a generator seeded by (seed, split + 3, i), disjoint from the held-out splits'."""
    if name not in SPLITS:
        raise ValueError(f"split must be one of {sorted(SPLITS)}, got {name!r}")
    automata = [train.automata[i % len(train)] for i in range(size)]
    sequences = [
        sample_sequence(a, np.random.default_rng([seed, SPLITS[name] + len(SPLITS), i])) for i, a in enumerate(automata)
    ]
    return Split(automata, sequences)


def pad_batch(sequences: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Inputs right-padded with '.' and labels with IGNORE to the batch's longest sequence (causal models ignore right
    padding, so padding per batch rather than per split changes nothing but speed)."""
    pairs = [inputs_and_labels(s) for s in sequences]
    T = max(len(x) for x, _ in pairs)
    X = np.full((len(pairs), T), PAD, dtype=np.int64)
    Y = np.full((len(pairs), T), IGNORE, dtype=np.int64)
    for b, (x, y) in enumerate(pairs):
        X[b, : len(x)], Y[b, : len(y)] = x, y
    return X, Y


def decode(tokens: np.ndarray) -> str:
    return "".join(VOCAB[t] for t in tokens)
