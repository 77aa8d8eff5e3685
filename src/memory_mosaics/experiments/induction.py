"""The single-block induction-head claim of Section 3, on a synthetic in-context task.

Each sequence is random noise tokens in which a few (trigger, target) bigrams, drawn afresh for every sequence, recur at
random positions. Predicting the target after the second and later occurrences of its trigger needs an induction head:
"the token that followed this token last time". A Memory Mosaic does it with one block of contextual memory (keys
summarise x_t, values peek at x_{t+1}); a transformer needs two attention layers, so a one-block GPT stays far below.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict, dataclass

import torch
from torch import Tensor
from tqdm import tqdm

from memory_mosaics.cli.types import out_folder, positive
from memory_mosaics.models import GPT, GPTConfig, LanguageModel, MemoryMosaic, MosaicConfig

HELP = "Single-block induction head (Section 3): one-block Memory Mosaic versus one-block GPT on recurring bigrams."


@dataclass
class TaskConfig:
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
    common = dict(vocab_size=task.vocab_size, block_size=task.seq_len, n_layer=1, n_head=n_head, n_embd=n_embd)
    return {
        "mosaic": MemoryMosaic(MosaicConfig(**common, persistent="none", bias=False)),
        "gpt": GPT(GPTConfig(**common, pos="learned", bias=False)),
    }


@torch.no_grad()
def accuracy(model: LanguageModel, batch: tuple[Tensor, Tensor, Tensor]) -> float:
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


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", type=out_folder, default="runs/induction", help="report folder")
    p.add_argument("--steps", type=positive, default=300, help="training steps for each model")
    p.add_argument("--seed", type=int, default=0, help="seed for initialisation and batches")
    p.add_argument("--vocab-size", type=int, default=TaskConfig.vocab_size)
    p.add_argument("--seq-len", type=int, default=TaskConfig.seq_len)
    p.add_argument("--pairs", type=int, default=TaskConfig.n_pairs, help="(trigger, target) bigrams per sequence")
    p.add_argument("--occurrences", type=int, default=TaskConfig.occurrences, help="occurrences of each bigram")


def run(args: argparse.Namespace) -> int:
    try:
        task = TaskConfig(args.vocab_size, args.seq_len, args.pairs, args.occurrences)
    except ValueError as e:
        print(f"mosaic induction: error: {e}", file=sys.stderr)
        return 2
    results = run_comparison(task, args.steps, args.seed, progress=True)
    args.out.mkdir(parents=True, exist_ok=True)
    record = {"task": asdict(task), "steps": args.steps, "seed": args.seed, "results": results}
    (args.out / "induction.json").write_text(json.dumps(record, indent=2) + "\n")
    for name, r in results.items():
        print(f"{name:7s} accuracy {r['accuracy']:.3f}  loss {r['final_loss']:.3f}  ({r['train_seconds']:.1f} s)")
    print(f"wrote {args.out / 'induction.json'}")
    return 0
