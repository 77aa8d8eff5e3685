"""The three task families as the training loop sees them: seeded training batches and a list of evaluation points.

A task is a function of its seed: training batch ``s`` is drawn from ``rng(seed, s)`` and evaluation batch ``i`` of
point ``j`` from ``rng(seed, EVAL, j, i)``, so every architecture sees the same sequences in the same order.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from memory_mosaics.experiments.longctx import mqar as mqar_mod
from memory_mosaics.experiments.longctx.common import TaskBatch, rng
from memory_mosaics.experiments.longctx.fewshot import FewShot
from memory_mosaics.experiments.longctx.needle import Haystack, Layout, needles, variable_tracking

EVAL = 0xE7A1  # salt of the evaluation draws: never the training batches
FINETUNE = 0xF17E  # salt of the context-extension fine-tune's batches: neither training nor test sequences


@dataclass(frozen=True)
class Point:
    """One evaluation point: its sequence length, the task's axis value (``axis``: seq_len, n_kv or shots) and what
    the table prints."""

    seq_len: int
    values: dict[str, int]

    @property
    def label(self) -> str:
        return ", ".join(f"{k} {v}" for k, v in self.values.items())


class Task:
    name: str
    vocab_size: int
    train_len: int  # the longest training sequence: GPT's learned positions cover it, no more

    def train_batch(self, step: int, micro: int, size: int) -> TaskBatch:
        raise NotImplementedError

    def points(self) -> list[Point]:
        raise NotImplementedError

    def eval_batch(self, j: int, i: int, size: int) -> TaskBatch:
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        raise NotImplementedError


@dataclass
class MQARTask(Task):
    """Trained on a mixture of (seq_len, n_kv) cells (one cell per optimiser step, drawn from the seed), scored on
    every cell of ``test_cells``, as Zoology does."""

    train_cells: list[tuple[int, int]]
    test_cells: list[tuple[int, int]]
    vocab_size: int = 8192
    seed: int = 0
    random_filler: bool = False
    name: str = "mqar"

    def __post_init__(self) -> None:
        for t, n in {*self.train_cells, *self.test_cells}:
            mqar_mod.check(t, n, self.vocab_size)
        self.train_len = max(t for t, _ in self.train_cells)

    def _draw(self, cell: tuple[int, int], size: int, key: tuple[int, ...]) -> TaskBatch:
        return mqar_mod.mqar(size, *cell, self.vocab_size, rng(self.seed, *key), random_filler=self.random_filler)

    def train_batch(self, step: int, micro: int, size: int) -> TaskBatch:
        cell = self.train_cells[int(rng(self.seed, step).integers(len(self.train_cells)))]
        return self._draw(cell, size, (step, micro))

    def points(self) -> list[Point]:
        return [Point(t, {"seq_len": t, "n_kv": n}) for t, n in self.test_cells]

    def eval_batch(self, j: int, i: int, size: int) -> TaskBatch:
        return self._draw(self.test_cells[j], size, (EVAL, j, i))

    def describe(self) -> dict[str, Any]:
        return {
            "task": "mqar",
            "train_cells": self.train_cells,
            "test_cells": self.test_cells,
            "vocab_size": self.vocab_size,
            "random_filler": self.random_filler,
            "data_seed": self.seed,
        }


@dataclass
class NeedleTask(Task):
    """Needle retrieval (``kind`` "needle") or variable tracking ("vt"), trained at ``train_len``, scored at every
    multiple of it in ``multiples``."""

    haystack: Haystack
    train_len: int = 256
    multiples: tuple[int, ...] = (1, 2, 4, 8)
    kind: str = "needle"
    n_needles: int = 4  # needles, or chains for vt
    n_queries: int = 1
    key_len: int = 1
    value_len: int = 1
    hops: int = 2
    n_keys: int = 64
    n_values: int = 64
    seed: int = 0
    name: str = "needle"
    layout: Layout = field(init=False)

    def __post_init__(self) -> None:
        if self.kind not in ("needle", "vt"):
            raise ValueError(f"kind must be 'needle' or 'vt', got {self.kind!r}")
        self.layout = Layout(self.haystack.vocab_size, self.n_keys, self.n_values)
        self.vocab_size = self.layout.vocab_size
        self.name = self.kind
        self._draw(self.train_len, 1, (0,))  # refuses a length too short for the statements, or a small haystack
        self._draw(self.train_len * max(self.multiples), 1, (0,))

    def _draw(self, seq_len: int, size: int, key: tuple[int, ...]) -> TaskBatch:
        g = rng(self.seed, *key)
        if self.kind == "needle":
            return needles(
                size,
                seq_len,
                self.haystack,
                g,
                self.n_needles,
                self.n_queries,
                self.key_len,
                self.value_len,
                self.layout,
            )
        return variable_tracking(
            size, seq_len, self.haystack, g, self.n_needles, self.hops, self.n_queries, self.layout
        )

    def train_batch(self, step: int, micro: int, size: int) -> TaskBatch:
        return self._draw(self.train_len, size, (step, micro))

    def finetune_batch(self, seq_len: int, step: int, micro: int, size: int) -> TaskBatch:
        """A training batch at another length (the context-extension fine-tune), drawn apart from every other."""
        return self._draw(seq_len, size, (FINETUNE, seq_len, step, micro))

    def points(self) -> list[Point]:
        return [Point(self.train_len * m, {"seq_len": self.train_len * m}) for m in self.multiples]

    def eval_batch(self, j: int, i: int, size: int) -> TaskBatch:
        return self._draw(self.train_len * self.multiples[j], size, (EVAL, j, i))

    def describe(self) -> dict[str, Any]:
        keep = (
            "train_len",
            "multiples",
            "kind",
            "n_needles",
            "n_queries",
            "key_len",
            "value_len",
            "hops",
            "n_keys",
            "n_values",
        )
        return {
            "task": self.kind,
            **{k: getattr(self, k) for k in keep},
            "haystack": self.haystack.source,
            "haystack_vocab": self.haystack.vocab_size,
            "vocab_size": self.vocab_size,
            "data_seed": self.seed,
        }


@dataclass
class FewShotTask(Task):
    """Few-shot classification with anonymous labels: trained with k drawn per step from ``train_shots`` (every shot
    label the context determines is scored: a denser signal), scored on the query alone for every k in
    ``test_shots``, k beyond the training ones included."""

    task: FewShot
    classes: int = 4
    train_shots: tuple[int, ...] = (1, 2, 3, 4)
    test_shots: tuple[int, ...] = (0, 1, 2, 4, 8)
    seed: int = 0
    name: str = "fewshot"

    def __post_init__(self) -> None:
        self.vocab_size = self.task.vocab_size
        self.train_len = self.task.seq_len(self.classes, max(self.train_shots))
        self.task.sample(1, self.classes, max(self.test_shots), rng(0))  # refuses impossible settings early

    def train_batch(self, step: int, micro: int, size: int) -> TaskBatch:
        shots = self.train_shots[int(rng(self.seed, step).integers(len(self.train_shots)))]
        return self.task.sample(size, self.classes, shots, rng(self.seed, step, micro), score_shots=True)

    def points(self) -> list[Point]:
        return [Point(self.task.seq_len(self.classes, k), {"shots": k}) for k in self.test_shots]

    def eval_batch(self, j: int, i: int, size: int) -> TaskBatch:
        return self.task.sample(size, self.classes, self.test_shots[j], rng(self.seed, EVAL, j, i))

    def describe(self) -> dict[str, Any]:
        t = self.task
        return {
            "task": "fewshot",
            "classes": self.classes,
            "train_shots": self.train_shots,
            "test_shots": self.test_shots,
            "n_pool": t.n_pool,
            "item_len": t.item_len,
            "n_item_tokens": t.n_item_tokens,
            "n_labels": t.n_labels,
            "noise": t.noise,
            "pool_seed": t.pool_seed,
            "vocab_size": self.vocab_size,
            "data_seed": self.seed,
        }
