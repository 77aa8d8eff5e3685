"""The single-block induction-head claim of Section 3, on a synthetic in-context task.

Each sequence is random noise tokens in which a few (trigger, target) bigrams, drawn afresh for every sequence, recur at
random positions. Predicting the target after the second and later occurrences of its trigger needs an induction head:
"the token that followed this token last time". A Memory Mosaic does it with one block of contextual memory (keys
summarise x_t, values peek at x_{t+1}); a transformer needs two attention layers, so a one-block GPT stays far below.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch
from torch import Tensor
from tqdm import tqdm

from memory_mosaics.models import LanguageModel, build_model


@dataclass
class TaskConfig:
    """The synthetic task: sequences of ``seq_len`` tokens in which ``n_pairs`` bigrams recur ``occurrences`` times."""

    vocab_size: int = 32
    seq_len: int = 64
    n_pairs: int = 4  # (trigger, target) bigrams per sequence
    occurrences: int = 4  # times each bigram appears

    def __post_init__(self) -> None:
        V, T, K, R = self.vocab_size, self.seq_len, self.n_pairs, self.occurrences
        if K < 1 or R < 2:
            raise ValueError(f"the task needs >= 1 pair occurring >= 2 times to score anything (got {K} x {R})")
        if 2 * K * R > T or 2 * K > V:
            raise ValueError(f"task does not fit: {K} pairs x {R} occurrences in {T} tokens of a {V}-token vocabulary")


def make_batch(task: TaskConfig, batch_size: int, generator: torch.Generator) -> tuple[Tensor, Tensor, Tensor]:
    """Tokens (B, T), next-token targets (B, T), and a mask (B, T) of the positions that are scored: a trigger at its
    second or later occurrence, whose next token is its target."""
    B, T, K, R, V = batch_size, task.seq_len, task.n_pairs, task.occurrences, task.vocab_size
    seq = torch.empty(B, T + 1, dtype=torch.long)
    scored = torch.zeros(B, T + 1, dtype=torch.bool)
    for b in range(B):
        perm = torch.randperm(V, generator=generator)
        triggers, rest = perm[:K], perm[K:]  # noise and targets never contain a trigger, so triggers are unambiguous
        targets = rest[torch.randint(len(rest), (K,), generator=generator)]
        seq[b] = rest[torch.randint(len(rest), (T + 1,), generator=generator)]
        # choose K·R non-overlapping slots of two tokens each
        slots = torch.randperm(T // 2, generator=generator)[: K * R].sort().values * 2
        which = torch.arange(K).repeat_interleave(R)[torch.randperm(K * R, generator=generator)]
        seen = torch.zeros(K, dtype=torch.bool)
        for pos, k in zip(slots.tolist(), which.tolist(), strict=True):
            seq[b, pos], seq[b, pos + 1] = triggers[k], targets[k]
            scored[b, pos] = seen[k]
            seen[k] = True
    return seq[:, :-1], seq[:, 1:], scored[:, :-1]


def build_models(task: TaskConfig, n_embd: int = 64, n_head: int = 4) -> dict[str, LanguageModel]:
    """A one-block Memory Mosaic with contextual memory only, and a one-block GPT with learned positions."""
    fields = dict(vocab_size=task.vocab_size, block_size=task.seq_len, n_layer=1, n_head=n_head, n_embd=n_embd)
    fields.update(bias=False, persistent="none", pos="learned")  # each architecture takes the fields it has
    return {arch: build_model(arch, **fields) for arch in ("mosaic", "gpt")}  # in this order: the same initial weights


@torch.no_grad()
def accuracy(model: LanguageModel, batch: tuple[Tensor, Tensor, Tensor]) -> float:
    """Next-token accuracy at the scored positions (the targets an induction head can predict)."""
    x, y, scored = batch
    model.eval()
    pred = model(x)[0].argmax(-1)
    return (pred == y)[scored].float().mean().item()


def train(
    model: LanguageModel,
    task: TaskConfig,
    steps: int,
    batch_size: int = 32,
    lr: float = 3e-3,
    seed: int = 0,
    progress: bool = False,
) -> list[float]:
    """AdamW on all positions' next-token loss, batches drawn from a generator seeded by ``seed`` alone."""
    gen = torch.Generator().manual_seed(seed)
    opt = model.configure_optimizers(weight_decay=0.0, learning_rate=lr, betas=(0.9, 0.98))
    model.train()
    losses = []
    for _ in tqdm(range(steps), disable=not progress, desc=type(model).__name__, leave=False):
        x, y, _ = make_batch(task, batch_size, gen)
        _, loss = model(x, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def run_comparison(
    task: TaskConfig | None = None, steps: int = 300, seed: int = 0, eval_size: int = 256, progress: bool = False
) -> dict[str, dict[str, float]]:
    """Train both one-block models with the same batches; return their accuracy on fresh sequences."""
    task = task or TaskConfig()
    torch.manual_seed(seed)
    models = build_models(task)
    test = make_batch(task, eval_size, torch.Generator().manual_seed(seed + 10_000))
    results = {}
    for name, model in models.items():
        t0 = time.perf_counter()
        losses = train(model, task, steps, seed=seed, progress=progress)
        results[name] = {
            "accuracy": accuracy(model, test),
            "final_loss": sum(losses[-20:]) / len(losses[-20:]),
            "params": model.num_params(non_embedding=False),
            "train_seconds": time.perf_counter() - t0,
        }
    return results
