"""The training engine shared by every architecture, one process or many (DDP or FSDP under ``torchrun``).

``train`` reads as its steps: ``start`` (set-up and resume, into one ``Run``), then per optimiser step ``step``
(forward and backward over the micro-batches, clip, AdamW), ``log_step``, ``validate`` and ``save``.

Exact resume rests on three facts: the learning rate is a pure function of the step (``WarmupCosine``); the batch is a
pure function of (seed, step) (``BatchOrder``); dropout masks are drawn after reseeding the global generator from
(seed, step, global micro-batch index). A checkpoint therefore only needs the weights, the AdamW moments and the step.
The same reseeding makes a W-process run draw the same dropout masks as a 1-process run with the same micro-batch.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from memory_mosaics import checkpoints as ckpt_io
from memory_mosaics.devices import autocast, autocast_dtype
from memory_mosaics.distributed import Dist, all_sum, any_true, barrier, setup, teardown
from memory_mosaics.evaluate import window_loss
from memory_mosaics.models import MODELS, LanguageModel, build_model
from memory_mosaics.train import parallel
from memory_mosaics.train.batches import BatchOrder
from memory_mosaics.train.config import TrainConfig
from memory_mosaics.train.log import RunLog, StopRequest, progress_bar, write_json
from memory_mosaics.train.schedule import WarmupCosine
from memory_mosaics.train.setup import Data, Geometry, check_optimizer_format, check_resume, resume_point

Callback = Callable[[int, dict[str, Any]], None]


def dropout_seed(seed: int, step: int, micro: int) -> int:
    return (seed * 1_000_003 + step * 65_537 + micro) % (2**63 - 1)


def draw_delay(model: nn.Module, seed: int, step: int) -> None:
    """A Memory Mosaic v2 draws its long-term delay m once per optimiser step, from (seed, step) alone: every process
    draws the same m, and a resumed run the same as the uninterrupted one."""
    if hasattr(model, "sample_delay"):
        model.sample_delay(torch.Generator().manual_seed(dropout_seed(seed, step, 1 << 30)))


@dataclass
class Run:
    """Everything a training run holds between two optimiser steps."""

    cfg: TrainConfig
    d: Dist
    data: Data
    geometry: Geometry
    model: LanguageModel  # the plain (or FSDP-sharded) model: what is saved and evaluated
    wrapped: nn.Module  # what the step calls: the model under DDP and/or torch.compile
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    precision: torch.dtype | None  # autocast dtype, None for fp32
    fsdp: bool
    schedule: WarmupCosine
    order: BatchOrder
    log: RunLog
    start: int  # the step training starts (or resumes) from
    resumed_from: Path | None
    elapsed0: float  # training seconds before this process started
    last_checkpoint: Path | None = None
    t_start: float = field(default_factory=time.perf_counter)

    @property
    def tokens_per_step(self) -> int:
        return self.cfg.batch_size * self.cfg.block_size

    def say(self, *args: Any, **kw: Any) -> None:
        if self.d.main:
            print(*args, **kw)

    def elapsed(self) -> float:
        return self.elapsed0 + time.perf_counter() - self.t_start


# ---- set-up and resume ----------------------------------------------------------------------------------------------
def start(cfg: TrainConfig, d: Dist) -> Run:
    """Open the data, choose the checkpoint to resume from, build (or load) the model and optimiser and wrap them."""
    data = Data.open(cfg)
    model_cfg = cfg.model_config(data.train.vocab_size, data.train.eot_id)
    geometry = Geometry.of(cfg, d.world)
    say = print if d.main else (lambda *a, **k: None)
    resume_from = resume_point(cfg, d, say)
    state: dict[str, Any] = {}
    if resume_from is not None:
        state = ckpt_io.load_trainer_state(resume_from)
        check_resume(resume_from, cfg, model_cfg, state, data.meta)
        model = ckpt_io.load_model(resume_from, MODELS[cfg.arch], model_cfg.vocab_size)
    else:
        torch.manual_seed(cfg.seed)  # the initial weights are a function of the seed
        model = build_model(cfg.arch, **dataclasses.asdict(model_cfg))
    model = model.to(d.device)
    fsdp = cfg.fsdp and d.enabled
    if fsdp:
        parallel.shard(model)
    optimizer = model.configure_optimizers(cfg.weight_decay, cfg.lr, (cfg.beta1, cfg.beta2), d.device.type == "cuda")
    precision = autocast_dtype(cfg.dtype, d.device)
    scaler = torch.amp.GradScaler(d.device.type, enabled=precision == torch.float16)
    if state:
        check_optimizer_format(resume_from, state, fsdp, parallel.OPTIMIZER_FORMATS)  # type: ignore[arg-type]
        parallel.load_optimizer(model, optimizer, state["optimizer"], fsdp)
        if state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
    begin = int(state.get("step", 0))
    return Run(
        cfg=cfg,
        d=d,
        data=data,
        geometry=geometry,
        model=model,
        wrapped=parallel.wrap(model, d, fsdp, cfg.compile),
        optimizer=optimizer,
        scaler=scaler,
        precision=precision,
        fsdp=fsdp,
        schedule=WarmupCosine(cfg.lr, cfg.min_lr, cfg.warmup_iters, cfg.decay_iters),
        order=BatchOrder(data.train.tokens, cfg.block_size, cfg.batch_size, cfg.seed),
        log=RunLog(Path(cfg.out_dir), d.main, begin if resume_from is not None else None, cfg.tensorboard),
        start=begin,
        resumed_from=resume_from,
        elapsed0=float(state.get("elapsed_s", 0.0)),
        last_checkpoint=resume_from,
    )


def record_run(run: Run) -> None:
    """run.json: the resolved configuration, the model's accounting, the data and the hardware (rank 0)."""
    cfg, d, m = run.cfg, run.d, run.model
    counts = {
        "params": m.num_params(),
        "params_total": m.num_params(non_embedding=False),
        "flops_per_token": m.flops_per_token(cfg.block_size),
    }
    if not d.main:
        return
    write_json(
        Path(cfg.out_dir) / ckpt_io.RUN_FILE,
        {
            "model_type": cfg.arch,
            "model": dataclasses.asdict(m.config),
            "train": cfg.to_dict(),
            "seed": cfg.seed,
            "world_size": d.world,
            "micro_batch_size": run.geometry.micro,
            "grad_accum": run.geometry.accum,
            "device": str(d.device),
            "autocast": str(run.precision),
            "torch": torch.__version__,
            **counts,
            "fsdp": run.fsdp,
            "data": {
                "directory": str(Path(cfg.data).resolve()),
                "val_split": run.data.val_split,
                "meta": {k: v for k, v in run.data.meta.items() if not k.startswith("_")},
                "train_windows_per_epoch": run.order.windows,
            },
            "resumed_from": str(run.resumed_from) if run.resumed_from else None,
        },
    )
    run.say(
        f"{cfg.arch}: {counts['params'] / 1e6:.2f}M parameters (non-embedding), {d.world} process(es) x "
        f"{run.geometry.accum} accumulation x {run.geometry.micro} sequences x {cfg.block_size} tokens, "
        f"from step {run.start}"
    )


# ---- one optimiser step ---------------------------------------------------------------------------------------------
def step(run: Run, step_index: int) -> tuple[Tensor, Tensor | None]:
    """Forward and backward over this process's micro-batches of global batch ``step_index``, then clip and AdamW.
    Returns the mean micro-batch loss (on the device: no host sync) and the gradient norm before clipping."""
    cfg, d, g = run.cfg, run.d, run.geometry
    for group in run.optimizer.param_groups:
        group["lr"] = run.schedule(step_index)
    draw_delay(run.model, cfg.seed, step_index)
    total = torch.zeros((), device=d.device)
    for m in range(g.accum):
        x, y = run.order.micro_batch(step_index, d.rank, d.world, m, g.micro)
        x, y = x.to(d.device, non_blocking=True), y.to(d.device, non_blocking=True)
        torch.manual_seed(dropout_seed(cfg.seed, step_index, d.rank * g.accum + m))
        sync = not (d.enabled and m < g.accum - 1)  # all-reduce the gradients once, on the last micro-batch
        with parallel.gradient_sync(run.model, run.wrapped, run.fsdp, sync):
            with autocast(d.device, run.precision):
                _, loss = run.wrapped(x, y)
            run.scaler.scale(loss / g.accum).backward()
        total += loss.detach() / g.accum
    grad_norm = None
    if cfg.grad_clip > 0:
        run.scaler.unscale_(run.optimizer)
        grad_norm = torch.nn.utils.clip_grad_norm_(run.model.parameters(), cfg.grad_clip)
        grad_norm = grad_norm.full_tensor() if hasattr(grad_norm, "full_tensor") else grad_norm
    run.scaler.step(run.optimizer)
    run.scaler.update()
    run.optimizer.zero_grad(set_to_none=True)
    return total, grad_norm


# ---- logging, validation, checkpoints -------------------------------------------------------------------------------
@dataclass
class Interval:
    """The training losses since the last log line; they stay on the device: one host sync per logged step."""

    device: torch.device
    loss: Tensor = field(init=False)
    steps: int = 0
    t0: float = 0.0

    def __post_init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.loss, self.steps, self.t0 = torch.zeros((), device=self.device), 0, time.perf_counter()

    def add(self, loss: Tensor) -> None:
        self.loss += loss
        self.steps += 1


def log_step(run: Run, step_index: int, interval: Interval, grad_norm: Tensor | None) -> dict[str, Any]:
    """The training log record of ``step_index`` (mean loss over the interval and the processes); resets it."""
    (loss_all,) = all_sum(run.d, float(interval.loss))
    now = time.perf_counter()
    record: dict[str, Any] = {
        "step": step_index,
        "loss": loss_all / (run.d.world * interval.steps),
        "lr": run.schedule(step_index - 1),
        "tokens": step_index * run.tokens_per_step,
        "tok_per_s": run.tokens_per_step * interval.steps / max(now - interval.t0, 1e-9),
        "elapsed_s": run.elapsed(),
    }
    if grad_norm is not None:
        record["grad_norm"] = float(grad_norm)
    run.log(record)
    interval.reset()
    return record


def validate(run: Run, step_index: int) -> None:
    """Validation loss on windows spread over the whole validation split (``--eval-batches`` micro-batches of them)."""
    if run.data.val is None:
        return
    t = time.perf_counter()
    g = run.geometry
    loss = window_loss(
        run.model,
        run.data.val.tokens,
        run.cfg.block_size,
        g.micro,
        run.cfg.eval_batches * g.micro,
        dist=run.d,
        precision=run.precision,
    )["loss"]
    run.log(
        {"step": step_index, "val_loss": loss, "val_ppl": math.exp(min(loss, 50.0)), "eval_s": time.perf_counter() - t}
    )


def trainer_state(run: Run, step_index: int, optim_state: dict[str, Any]) -> dict[str, Any]:
    """``trainer.pt``: what resuming needs besides the weights (plain tensors, dicts and numbers)."""
    cfg = run.cfg
    return {
        "format": 1,
        "step": step_index,
        "optimizer": optim_state,
        "optimizer_format": parallel.OPTIMIZER_FORMATS[run.fsdp],
        "scaler": run.scaler.state_dict(),
        "schedule": {"step": step_index, **dataclasses.asdict(run.schedule)},
        "rng": {
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        },
        "data": {
            "samples": step_index * cfg.batch_size,
            "seed": cfg.seed,
            "batch_size": cfg.batch_size,
            "block_size": cfg.block_size,
            "split": cfg.train_split,
        },
        "tokens": step_index * run.tokens_per_step,
        "elapsed_s": run.elapsed(),
        "world_size": run.d.world,
        "model_type": cfg.arch,
        "train": cfg.to_dict(),
    }


def save(run: Run, step_index: int) -> None:
    """Write checkpoint ``step_index`` (gathered to rank 0 under FSDP: every rank takes part)."""
    weights, optim_state = parallel.full_state(run.model, run.optimizer, run.fsdp)
    if run.d.main:
        run.last_checkpoint = ckpt_io.save_training(
            Path(run.cfg.out_dir),
            step_index,
            weights,  # type: ignore[arg-type]
            trainer_state(run, step_index, optim_state),
            run.data.meta,
            run.cfg.keep_last,
            run.say,
            Path(run.cfg.data),
        )
    barrier(run.d)


# ---- the loop -------------------------------------------------------------------------------------------------------
def train(cfg: TrainConfig, callback: Callback | None = None) -> dict[str, Any]:
    """Train as ``cfg`` says; returns {"step", "records", "checkpoint", "interrupted"}. ``callback(step, record)`` is
    called after every optimiser step (for tests and notebooks)."""
    d = setup(cfg.device)  # first: a device this machine lacks is refused before anything changes
    threads = torch.get_num_threads()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    try:
        run = start(cfg, d)
        record_run(run)
        return loop(run, callback)
    finally:
        teardown(d)
        torch.set_num_threads(threads)  # a library call leaves the process as it found it


def loop(run: Run, callback: Callback | None) -> dict[str, Any]:
    """Optimiser steps from ``run.start`` to ``--max-iters``: log, validate and checkpoint at their intervals, and
    checkpoint and stop early on Ctrl-C / SIGTERM."""
    cfg = run.cfg
    if run.start == 0:
        validate(run, 0)
    run.t_start = time.perf_counter()  # elapsed_s counts training steps, not the set-up and the first validation
    interrupted = False
    bar = progress_bar(cfg.max_iters, run.start, run.d.main and cfg.progress)
    run.wrapped.train()
    interval = Interval(run.d.device)
    step_index = run.start
    with StopRequest() as stop:
        while step_index < cfg.max_iters:
            loss, grad_norm = step(run, step_index)
            step_index += 1
            interval.add(loss)
            record: dict[str, Any] = {}
            if step_index % cfg.log_interval == 0 or step_index == cfg.max_iters:
                record = log_step(run, step_index, interval, grad_norm)
                bar.set_postfix(
                    loss=f"{record['loss']:.4f}", tok_s=f"{record['tok_per_s']:.0f}", lr=f"{record['lr']:.2e}"
                )
            bar.update(1)
            if callback is not None:
                callback(step_index, record)
            if (cfg.eval_interval and step_index % cfg.eval_interval == 0) or step_index == cfg.max_iters:
                validate(run, step_index)
            interrupted = any_true(run.d, stop.requested)
            if interrupted or step_index % cfg.ckpt_interval == 0 or step_index == cfg.max_iters:
                save(run, step_index)
            if interrupted:
                run.say(f"\ninterrupted: saved {run.last_checkpoint} at step {step_index}; continue with --resume")
                break
    bar.close()
    run.log.close()
    return {
        "step": step_index,
        "records": run.log.records,
        "checkpoint": run.last_checkpoint,
        "interrupted": interrupted,
    }
