"""Train every architecture on a generated task and score it at the task's evaluation points (lengths, key-value
pairs, shots); write the results folder.

Training goes through the library's engine: ``train.engine.step`` (the forward and backward over micro-batches, v2's
long-term delay m drawn per step from the seed, dropout reseeding, clipping, AdamW) with the ``WarmupCosine``
schedule and the models' own optimiser groups; only the batch source differs from ``mosaic train`` (a task's seeded
batches instead of windows of a token shard), so ``_TaskRun`` carries just what ``step`` reads of a ``Run``.
Scoring is greedy: a scored position is right when the argmax of the logits is its target.

The context-extension fine-tune (the v2 paper's §7: a model trained at a short length, then a few optimiser steps at
a longer one) continues each trained model from its optimiser state at the schedule's last learning rate, on
batches at ``finetune_len`` drawn apart from training and test, and scores the same test sequences again.
"""

from __future__ import annotations

import copy
import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from memory_mosaics.devices import autocast, autocast_dtype, pick_device
from memory_mosaics.distributed import Dist
from memory_mosaics.experiments.longctx.baselines import LABELS, make_model
from memory_mosaics.experiments.longctx.common import IGNORE
from memory_mosaics.experiments.longctx.tasks import Task
from memory_mosaics.models import LanguageModel
from memory_mosaics.models.sizes import body_params
from memory_mosaics.train import engine
from memory_mosaics.train.log import progress_bar, write_json
from memory_mosaics.train.schedule import WarmupCosine
from memory_mosaics.train.setup import Geometry


@dataclass
class SuiteConfig:
    """What every model of one run shares; saved in config.json beside the task's own description."""

    models: list[str] = field(default_factory=lambda: ["mosaic", "mosaic2", "mosaic2-fixed", "gpt", "llama", "lstm"])
    widths: list[int] = field(default_factory=lambda: [64])  # n_embd; each model is trained at every width
    n_layer: int = 2
    n_head: int = 4
    steps: int = 300
    batch_size: int = 32
    micro_batch_size: int | None = None  # None: the whole batch in one forward
    lr: float = 3e-3
    min_lr_frac: float = 0.1
    warmup_steps: int = 30
    weight_decay: float = 0.1
    grad_clip: float = 1.0
    eval_sequences: int = 256  # per evaluation point
    eval_batch_size: int = 32
    seed: int = 0  # initialisation (and v2's m per step)
    short_window: int = 32  # v2's h
    long_delay: int = 16  # v2's m at inference (and in training for mosaic2-fixed)
    long_delay_min: int = 16  # mosaic2 draws m per step from [min, max]
    long_delay_max: int = 32
    finetune_len: int | None = None  # context extension: fine-tune at this test length after training ...
    finetune_steps: list[int] = field(default_factory=list)  # ... for each of these step counts, from the same model
    finetune_lr: float | None = None  # constant; None: the schedule's last, lr·min_lr_frac
    device: str = "auto"
    dtype: str = "auto"
    progress: bool = True

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "eval_sequences", "eval_batch_size", "n_layer", "n_head"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.micro_batch_size is not None and self.batch_size % self.micro_batch_size:
            raise ValueError(f"batch_size {self.batch_size} is not a multiple of micro_batch_size")
        if any(w % self.n_head for w in self.widths):
            raise ValueError(f"every width in {self.widths} must be a multiple of n_head {self.n_head}")
        if self.finetune_steps and self.finetune_len is None:
            raise ValueError("finetune_steps needs finetune_len, the length to fine-tune and test at")
        if any(k < 1 for k in self.finetune_steps):
            raise ValueError(f"finetune_steps must be >= 1, got {self.finetune_steps}")

    @property
    def v2(self) -> dict[str, int]:
        keys = ("short_window", "long_delay", "long_delay_min", "long_delay_max")
        return {k: getattr(self, k) for k in keys}


class _Order:
    """``engine.step``'s batch source: micro-batch ``m`` of step ``s`` is the task's training batch (s, m), or with
    ``seq_len`` its fine-tune batch at that length."""

    def __init__(self, task: Task, seq_len: int | None = None) -> None:
        self.task, self.seq_len = task, seq_len

    def micro_batch(self, step: int, rank: int, world: int, micro: int, micro_size: int) -> tuple[Tensor, Tensor]:
        key = rank * 1_000 + micro
        if self.seq_len is None:
            b = self.task.train_batch(step, key, micro_size)
        else:
            b = self.task.finetune_batch(self.seq_len, step, key, micro_size)  # type: ignore[attr-defined]
        return b.inputs, b.targets


@dataclass
class _TaskRun:
    """What ``engine.step`` reads of a ``Run`` (one process, no sharding)."""

    cfg: Any  # .seed, .grad_clip
    d: Dist
    geometry: Geometry
    schedule: WarmupCosine
    model: LanguageModel
    wrapped: nn.Module
    order: _Order
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    precision: torch.dtype | None
    fsdp: bool = False


def _task_run(
    model: LanguageModel, task: Task, cfg: SuiteConfig, device: torch.device, schedule: WarmupCosine, order: _Order
) -> _TaskRun:
    precision = autocast_dtype(cfg.dtype, device)
    micro = cfg.micro_batch_size or cfg.batch_size
    return _TaskRun(
        cfg=cfg,
        d=Dist(device=device),
        geometry=Geometry(micro, cfg.batch_size // micro),
        schedule=schedule,
        model=model,
        wrapped=model,
        order=order,
        optimizer=model.configure_optimizers(cfg.weight_decay, cfg.lr, fused=device.type == "cuda"),
        scaler=torch.amp.GradScaler(device.type, enabled=precision == torch.float16),
        precision=precision,
    )


def _train(
    model: LanguageModel, task: Task, cfg: SuiteConfig, device: torch.device, desc: str
) -> tuple[dict, _TaskRun]:
    schedule = WarmupCosine(cfg.lr, cfg.lr * cfg.min_lr_frac, cfg.warmup_steps, cfg.steps)
    run = _task_run(model, task, cfg, device, schedule, _Order(task))
    bar = progress_bar(cfg.steps, 0, cfg.progress)
    bar.set_description(desc)
    model.train()
    curve, t0, window = [], time.perf_counter(), []
    every = max(1, cfg.steps // 50)
    for s in range(cfg.steps):
        loss, _ = engine.step(run, s)  # type: ignore[arg-type]
        window.append(loss)
        if (s + 1) % every == 0 or s + 1 == cfg.steps:
            mean = float(torch.stack(window).mean())
            curve.append({"step": s + 1, "loss": mean})
            bar.set_postfix(loss=f"{mean:.3f}")
            window = []
        bar.update(1)
    bar.close()
    return {"train_seconds": time.perf_counter() - t0, "curve": curve, "final_loss": curve[-1]["loss"]}, run


def train_model(model: LanguageModel, task: Task, cfg: SuiteConfig, device: torch.device, desc: str) -> dict[str, Any]:
    """``cfg.steps`` optimiser steps on the task's training batches; returns the loss curve and the seconds."""
    return _train(model, task, cfg, device, desc)[0]


def finetune(trained: _TaskRun, task: Task, cfg: SuiteConfig, steps: int) -> tuple[LanguageModel, list[float]]:
    """A copy of the trained model after ``steps`` more optimiser steps at ``cfg.finetune_len`` (its optimiser state
    carried over, a constant learning rate); the model that trained is left as it is. Returns the copy and the
    fine-tune losses."""
    assert cfg.finetune_len is not None
    lr = cfg.finetune_lr if cfg.finetune_lr is not None else cfg.lr * cfg.min_lr_frac
    model = copy.deepcopy(trained.model)
    run = _task_run(model, task, cfg, trained.d.device, WarmupCosine(lr, lr, 0, steps), _Order(task, cfg.finetune_len))
    run.optimizer.load_state_dict(copy.deepcopy(trained.optimizer.state_dict()))  # same model, same parameter order
    model.train()
    # step indices after training's: v2 draws its m for them as training would have gone on
    losses = [float(engine.step(run, cfg.steps + s)[0]) for s in range(steps)]  # type: ignore[arg-type]
    return model, losses


@torch.no_grad()
def evaluate(model: LanguageModel, task: Task, cfg: SuiteConfig, device: torch.device) -> list[dict[str, Any]]:
    """Accuracy at every evaluation point: over scored positions (``accuracy``) and over sequences whose scored
    positions are all right (``sequence_accuracy``). A point longer than the model can read (GPT's learned positions)
    is recorded with its reason instead of a number."""
    model.eval()
    out = [evaluate_point(model, task, j, cfg, device) for j in range(len(task.points()))]
    model.train()
    return out


@torch.no_grad()
def evaluate_point(model: LanguageModel, task: Task, j: int, cfg: SuiteConfig, device: torch.device) -> dict[str, Any]:
    """``evaluate`` at the task's evaluation point ``j`` alone; the model stays in the mode it is in."""
    precision = autocast_dtype(cfg.dtype, device)
    point = task.points()[j]
    row: dict[str, Any] = {**point.values, "seq_len": point.seq_len}
    if model.max_context is not None and point.seq_len > model.max_context:
        return {
            **row,
            "accuracy": None,
            "note": f"cannot read {point.seq_len} tokens: {model.max_context} learned positions",
        }
    right = scored = seq_right = seqs = 0
    loss_sum = 0.0
    for i in range(math.ceil(cfg.eval_sequences / cfg.eval_batch_size)):
        size = min(cfg.eval_batch_size, cfg.eval_sequences - i * cfg.eval_batch_size)
        b = task.eval_batch(j, i, size)
        x, y = b.inputs.to(device), b.targets.to(device)
        with autocast(device, precision):
            logits = model(x)[0]
        mask = y != IGNORE
        logits = logits.float()[mask]
        hit = logits.argmax(-1) == y[mask]
        loss_sum += float(torch.nn.functional.cross_entropy(logits, y[mask], reduction="sum"))
        right, scored = right + int(hit.sum()), scored + int(mask.sum())
        per_seq = torch.zeros_like(y, dtype=torch.bool)
        per_seq[mask] = ~hit
        seq_right, seqs = seq_right + int((~per_seq.any(1)).sum()), seqs + y.shape[0]
    return {
        **row,
        "accuracy": right / scored,
        "sequence_accuracy": seq_right / seqs,
        "loss": loss_sum / scored,
        "scored": scored,
    }


def run_suite(task: Task, cfg: SuiteConfig, out_dir: Path | None = None, extra: dict[str, Any] | None = None) -> dict:
    """Every model of ``cfg.models`` at every width of ``cfg.widths``: built (bodies matched to v1's), trained,
    scored. With ``out_dir``: config.json first, then results.json after every model (a long run shows its progress
    and keeps what it finished), results.md and the plots at the end."""
    device = pick_device(cfg.device)
    ft_point = _finetune_point(task, cfg)
    config = {
        "suite": asdict(cfg),
        "task": task.describe(),
        **(extra or {}),
        "device": str(device),
        "torch": torch.__version__,
    }
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        write_json(out_dir / "config.json", config)
    results: dict[str, Any] = {"config": config, "runs": []}
    t0 = time.perf_counter()
    for width in cfg.widths:
        for name in cfg.models:
            fields = dict(
                vocab_size=task.vocab_size,
                block_size=task.train_len,
                n_layer=cfg.n_layer,
                n_head=cfg.n_head,
                n_embd=width,
            )
            torch.manual_seed(cfg.seed)
            model, resolved = make_model(name, fields, cfg.v2)
            model = model.to(device)
            trained, run = _train(model, task, cfg, device, f"{name} d{width}")
            t = time.perf_counter()
            evals = evaluate(model, task, cfg, device)
            tuned = [] if ft_point is None else _finetunes(run, task, cfg, ft_point, evals[ft_point])
            results["runs"].append(
                {
                    "model": name,
                    "label": LABELS[name],
                    "n_embd": width,
                    "params_body": body_params(model),
                    "params_total": model.num_params(non_embedding=False),
                    "model_config": resolved,
                    **trained,
                    "eval_seconds": time.perf_counter() - t,
                    "eval": evals,
                    **({"finetune": tuned} if tuned else {}),
                }
            )
            results["wall_seconds"] = time.perf_counter() - t0
            if out_dir is not None:
                write_json(out_dir / "results.json", results)
    if out_dir is not None:
        from memory_mosaics.experiments.longctx.report import write_report

        write_report(results, out_dir)
    return results


def _finetune_point(task: Task, cfg: SuiteConfig) -> int | None:
    """The evaluation point the fine-tune is scored at (its test sequences are the point's), checked before any
    training; None without a fine-tune."""
    if not cfg.finetune_steps:
        return None
    if not hasattr(task, "finetune_batch"):
        raise ValueError(f"the {task.name} task has no context-extension fine-tune (needle and vt have)")
    lengths = [p.seq_len for p in task.points()]
    if cfg.finetune_len not in lengths:
        raise ValueError(f"finetune_len {cfg.finetune_len} is not one of the test lengths {lengths}")
    return lengths.index(cfg.finetune_len)


def _finetunes(run: _TaskRun, task: Task, cfg: SuiteConfig, j: int, before: dict[str, Any]) -> list[dict[str, Any]]:
    """Accuracy at test point ``j`` after each of ``cfg.finetune_steps`` steps at its length, from the trained model;
    0 steps is the trained model itself."""
    rows = [{"steps": 0, **before}]
    for k in cfg.finetune_steps:
        if before.get("accuracy") is None:  # the model cannot read that length (GPT's learned positions)
            rows.append({"steps": k, **before})
            continue
        model, losses = finetune(run, task, cfg, k)
        model.eval()
        rows.append({"steps": k, **evaluate_point(model, task, j, cfg, run.d.device), "finetune_losses": losses})
    return rows


def read_results(out_dir: Path) -> dict[str, Any]:
    return json.loads((out_dir / "results.json").read_text())
