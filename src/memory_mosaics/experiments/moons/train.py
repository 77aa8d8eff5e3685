"""Training of the three-moons nets: AdamW, learning rate decayed linearly, clipped squared loss (Appendix A), in
three phases (short sequences, full blocks, rollout fine-tuning); why: ``results/moons/README.md``."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import Tensor
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR
from tqdm import tqdm

from memory_mosaics.models.base import check_range
from memory_mosaics.ops.retrieval import retrieval

from .data import MoonsData
from .model import MoonsNet, clipped_loss


@dataclass
class MoonsTrainConfig:
    """The recipe of one net (the three-head one; ``one_head_config`` derives the one-head net's)."""

    iters: int = 400
    batch_size: int = 8  # one sequence per training combination (balanced)
    lr: float = 3e-2
    lr_end: float = 5e-6
    clip: float = 0.5  # loss clipping of the first phase
    short_len: int = 200  # sequence length of the first phase (0: full blocks throughout, the authors' recipe)
    short_frac: float = 0.5  # fraction of the iterations in the first phase
    final_clip: float = 0.05  # loss clipping at the end of the second phase (full blocks)
    key_init_scale: float = 10.0  # multiplies the initial W_φ (1: the authors' initialisation)
    restarts: int = 4  # first-phase candidates per seed; the one with the lowest training loss goes on
    balanced: bool = True  # every batch cycles through the training combinations
    rollout_iters: int = 150  # phase 3: iterations of rollout fine-tuning (0: none)
    rollout_steps: int = 25  # auto-regressive steps per rollout (the figures' 25)
    rollout_lr: float = 5e-4  # Adam, decayed linearly to 0
    rollout_context: tuple[int, int] = (60, 400)  # contexts drawn uniformly in [lo, hi)
    rollout_per_combo: int = 8  # sequences per training combination in a batch

    def __post_init__(self) -> None:
        """Refuse a recipe that cannot train, before any work."""
        check_range(self, ">= 1", ("iters", "batch_size", "restarts", "rollout_steps", "rollout_per_combo"))
        check_range(self, ">= 0", ("short_len", "rollout_iters", "lr_end"))
        check_range(self, "> 0", ("lr", "clip", "final_clip", "key_init_scale", "rollout_lr"))
        check_range(self, "in [0, 1]", ("short_frac",))
        if not 1 <= self.rollout_context[0] < self.rollout_context[1]:
            raise ValueError(f"rollout_context must be (lo, hi) with 1 <= lo < hi, got {self.rollout_context}")


def authors_config() -> MoonsTrainConfig:
    """The recipe of the authors' script: batch 64 of random combinations, 500 iterations, lr 1e-2, full blocks."""
    return MoonsTrainConfig(
        iters=500,
        batch_size=64,
        lr=1e-2,
        short_len=0,
        short_frac=0.0,
        final_clip=0.5,
        key_init_scale=1.0,
        restarts=1,
        balanced=False,
        rollout_iters=0,
    )


def one_head_config(cfg: MoonsTrainConfig) -> MoonsTrainConfig:
    """The one-head net's recipe: the same phase 1, a phase 2 on full blocks three times as long (by default 800
    iterations, a quarter in phase 1), no phase 3."""
    if not cfg.short_len:
        return replace(cfg, rollout_iters=0)
    n_short = cfg.short_frac * cfg.iters
    iters = round(n_short + 3 * (cfg.iters - n_short))
    return replace(cfg, iters=iters, short_frac=n_short / iters, rollout_iters=0)


def linear_schedule(lr: float, lr_end: float, iters: int) -> Callable[[int], float]:
    """The authors' optim.linear_schedule as a LambdaLR factor: the learning rate falls linearly from ``lr`` at step 0
    to ``lr_end`` at step ``iters`` and stays there."""
    return lambda i: 1 + (lr_end / lr - 1) * min(i, iters) / iters


def _optimise(
    opt: Optimizer, sched: LambdaLR, loss_at: Callable[[int], Tensor], steps: Iterable[int], bar: Any, name: str
) -> list[float]:
    """One optimiser step per i in ``steps`` on ``loss_at(i)`` (which draws its own batch); returns the losses."""
    losses = []
    for i in steps:
        loss = loss_at(i)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        losses.append(loss.item())
        if bar is not None:
            bar.update()
            bar.set_postfix({name: f"{losses[-1]:.4f}"})
    return losses


def _steps(
    model: MoonsNet,
    opt: Optimizer,
    sched: LambdaLR,
    cfg: MoonsTrainConfig,
    data: MoonsData,
    gen: torch.Generator,
    steps: range,
    seq_len: int,
    clips: Callable[[int], float],
    bar: Any,
) -> list[float]:
    """Phases 1 and 2: the clipped loss of training batches of ``seq_len`` steps, clipped at ``clips(i)``."""

    def loss_at(i: int) -> Tensor:
        x, y = data.train_batch(cfg.batch_size, gen, balanced=cfg.balanced, seq_len=seq_len)
        return clipped_loss(model(x), y, clips(i))

    return _optimise(opt, sched, loss_at, steps, bar, "loss")


def clip_at(cfg: MoonsTrainConfig, i: int) -> float:
    """Loss clipping at iteration i: ``clip`` in phase 1, then geometric from ``clip`` to ``final_clip`` over the first
    half of phase 2 (a net that does not predict yet still gets a gradient), then ``final_clip``."""
    n_short = round(cfg.short_frac * cfg.iters) if cfg.short_len else 0
    if i < n_short or cfg.final_clip == cfg.clip:
        return cfg.clip
    progress = min(1.0, (i - n_short) / max(1, (cfg.iters - n_short) / 2))
    return cfg.clip * (cfg.final_clip / cfg.clip) ** progress


def rollout_loss(model: MoonsNet, seq: Tensor, contexts: list[int], steps: int) -> Tensor:
    """Mean absolute deviation of ``steps`` auto-regressive predictions after context ``contexts[b]`` of sequence b,
    differentiable: the counterpart of ``evaluate.rollout_error`` (which shares one prefix between many contexts and
    writes generated pairs in place) with one context per sequence and the generated pairs concatenated."""
    B, c = seq.shape[0], torch.tensor(contexts)
    Lp = max(contexts) - 1  # longest true prefix of stored pairs
    keys = model.keys(seq[:, : Lp + 1])  # (B, H, Lp+1, dh)
    mem_k, mem_v = keys[:, :, :Lp], model.values(seq[:, 1 : Lp + 1])
    visible = torch.arange(Lp) < (c[:, None] - 1)  # context c stores the true pairs t < c − 1
    rows = torch.arange(B)
    query = keys[rows, :, c - 1]  # (B, H, dh)
    target = seq[rows[:, None], c[:, None] + torch.arange(steps)]  # (B, steps, 6)
    err = seq.new_zeros(())
    for j in range(steps):
        bias = torch.zeros(B, 1, 1, mem_k.shape[2]).masked_fill_(~visible[:, None, None], -math.inf)
        y = retrieval(query[:, :, None], mem_k, mem_v, lookahead=None, scale=model.beta, bias=bias)
        x_hat = model.output(y).squeeze(-2)  # (B, 6)
        err = err + (x_hat - target[:, j]).abs().mean()
        # store (k_{c−1+j}, W_ψ x̂_{c+j}), query with the key of the prediction
        mem_k = torch.cat([mem_k, query[:, :, None]], 2)
        mem_v = torch.cat([mem_v, model.values(x_hat[:, None])], 2)
        visible = torch.cat([visible, visible.new_ones(B, 1)], 1)
        query = model.keys(x_hat[:, None]).squeeze(-2)
    return err / steps


def _rollout_phase(
    model: MoonsNet, cfg: MoonsTrainConfig, data: MoonsData, gen: torch.Generator, bar: Any
) -> list[float]:
    """Phase 3: Adam on the rollout error of training combinations from contexts drawn in ``rollout_context``."""
    opt = torch.optim.Adam(model.parameters(), lr=cfg.rollout_lr)
    sched = LambdaLR(opt, linear_schedule(cfg.rollout_lr, 0.0, cfg.rollout_iters))
    lo, hi = cfg.rollout_context

    def loss_at(_: int) -> Tensor:
        length = hi + cfg.rollout_steps
        seq = torch.cat([data.sequences(combo, cfg.rollout_per_combo, gen, length) for combo in data.train_combos])
        contexts = torch.randint(lo, hi, (seq.shape[0],), generator=gen).tolist()
        return rollout_loss(model, seq, contexts, cfg.rollout_steps)

    return _optimise(opt, sched, loss_at, range(cfg.rollout_iters), bar, "rollout")


def train_net(
    n_heads: int, seed: int, cfg: MoonsTrainConfig, data: MoonsData | None = None, progress: bool = False
) -> tuple[MoonsNet, list[float], list[float]]:
    """Train one net from seed ``seed`` (which fixes its initialisations and its data); returns (net, clipped loss per
    step of the kept candidate in phases 1-2, rollout loss per step of phase 3)."""
    data = data or MoonsData()
    gen = torch.Generator().manual_seed(seed)
    n_short = round(cfg.short_frac * cfg.iters) if cfg.short_len else 0
    n_cand = max(1, cfg.restarts) if n_short else 1
    total = n_cand * n_short + cfg.iters - n_short + cfg.rollout_iters
    bar = tqdm(total=total, desc=f"{n_heads}h seed {seed}", disable=not progress)
    best = None
    for _ in range(n_cand):
        model = MoonsNet(n_heads, generator=gen)
        with torch.no_grad():
            model.W_phi.mul_(cfg.key_init_scale)
        opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=(0.9, 0.999), weight_decay=0.0)
        sched = LambdaLR(opt, linear_schedule(cfg.lr, cfg.lr_end, cfg.iters))
        losses = _steps(model, opt, sched, cfg, data, gen, range(n_short), cfg.short_len, lambda i: cfg.clip, bar)
        score = sum(losses[-20:]) / max(1, len(losses[-20:]))
        if best is None or score < best[0]:
            best = (score, model, opt, sched, losses)
    _, model, opt, sched, losses = best
    phase2 = range(n_short, cfg.iters)
    losses += _steps(model, opt, sched, cfg, data, gen, phase2, data.block_size, lambda i: clip_at(cfg, i), bar)
    rollout_losses = _rollout_phase(model, cfg, data, gen, bar) if cfg.rollout_iters else []
    bar.close()
    return model, losses, rollout_losses
