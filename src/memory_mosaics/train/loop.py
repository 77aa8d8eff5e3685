"""The training loop shared by both architectures, one process or many (DDP under ``torchrun``).

Exact resume rests on three facts: the learning rate is a pure function of the step (``WarmupCosine``); the batch is a
pure function of (seed, step) (``BatchOrder``); dropout masks are drawn after reseeding the global generator from
(seed, step, global micro-batch index). A checkpoint therefore only needs the weights, the AdamW moments and the step.
The same reseeding makes a W-process run draw the same dropout masks as a 1-process run with the same micro-batch.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from memory_mosaics.models import MODELS, LanguageModel, read_config
from memory_mosaics.train import checkpoint as ckpt_io
from memory_mosaics.train.batches import BatchOrder, default_val_split, eval_starts, open_split, windows
from memory_mosaics.train.config import TrainConfig
from memory_mosaics.train.distributed import Dist, all_sum, any_true, barrier, broadcast_object, setup, teardown
from memory_mosaics.train.schedule import WarmupCosine

RUN_FILE = "run.json"
LOG_FILE = "log.jsonl"
# options that must not change when resuming, because the data position or the model depends on them
_FIXED_ON_RESUME = ("seed", "batch_size", "block_size", "train_split", "arch")


def autocast_dtype(name: str, device: torch.device) -> torch.dtype | None:
    """None = no autocast (fp32). bf16 on CUDA by default; CPU runs stay in fp32 (exact and simplest to compare)."""
    if name == "auto":
        if device.type == "cuda" and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return None
    return {"float32": None, "bfloat16": torch.bfloat16, "float16": torch.float16}[name]


def dropout_seed(seed: int, step: int, micro: int) -> int:
    return (seed * 1_000_003 + step * 65_537 + micro) % (2**63 - 1)


class _Interrupt:
    """Turn the first Ctrl-C / SIGTERM into a request to checkpoint and stop at the end of the step; a second Ctrl-C
    interrupts at once."""

    def __init__(self) -> None:
        self.requested = False
        self._old: dict[int, Any] = {}

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.requested = True

    def __enter__(self) -> _Interrupt:
        with contextlib.suppress(ValueError):  # not the main thread: leave the signals alone
            for s in (signal.SIGINT, signal.SIGTERM):
                self._old[s] = signal.signal(s, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for s, h in self._old.items():
            signal.signal(s, h)


class _Log:
    """Rank-0 JSONL log (and TensorBoard when installed and asked for)."""

    def __init__(self, run_dir: Path, enabled: bool, resume_step: int | None, tensorboard: bool) -> None:
        self.enabled, self.path, self.tb = enabled, run_dir / LOG_FILE, None
        self.records: list[dict[str, Any]] = []
        if not enabled:
            return
        if resume_step is not None and self.path.is_file():
            # drop what the interrupted run logged after its last checkpoint: those steps are about to be redone
            kept = [ln for ln in self.path.read_text().splitlines() if ln.strip() and _step(ln) <= resume_step]
            self.path.write_text("".join(ln + "\n" for ln in kept))
            self.records = [json.loads(ln) for ln in kept]
        elif self.path.exists():
            self.path.unlink()
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                pass
            else:
                self.tb = SummaryWriter(str(run_dir / "tensorboard"), purge_step=resume_step)

    def __call__(self, record: dict[str, Any]) -> None:
        self.records.append(record)
        if not self.enabled:
            return
        with self.path.open("a") as f:
            f.write(json.dumps(record) + "\n")
        if self.tb is not None:
            for k, v in record.items():
                if k != "step" and isinstance(v, (int, float)):
                    self.tb.add_scalar(k, v, record["step"])

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


def _step(line: str) -> int:
    try:
        return int(json.loads(line).get("step", 0))
    except (json.JSONDecodeError, AttributeError, TypeError, ValueError):
        return 1 << 62  # a line cut by kill -9: drop it


def _write_json(path: Path, obj: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, default=str) + "\n")
    tmp.replace(path)


def _check_resume(ckpt: Path, cfg: TrainConfig, model_cfg: Any, state: dict[str, Any], meta: dict[str, Any]) -> None:
    """One clear error, naming the file, when the checkpoint does not fit the requested run."""
    model_type, saved = read_config(ckpt)
    if model_type != cfg.arch:
        raise ckpt_io.CheckpointError(
            f"{ckpt / 'config.json'} holds a {model_type!r} model but this run asks for --arch {cfg.arch}; "
            "use another --out-dir or the same architecture"
        )
    wanted = dataclasses.asdict(model_cfg)
    diff = {k: (saved.get(k), v) for k, v in wanted.items() if saved.get(k) != v}
    if "vocab_size" in diff:
        raise ckpt_io.CheckpointError(
            f"vocabulary mismatch: {ckpt / 'config.json'} has vocab_size {saved.get('vocab_size')} but the dataset "
            f"{cfg.data} gives {model_cfg.vocab_size} (another tokenizer?)"
        )
    if diff:
        detail = ", ".join(f"{k}: checkpoint {a!r} vs requested {b!r}" for k, (a, b) in diff.items())
        raise ckpt_io.CheckpointError(f"{ckpt / 'config.json'} does not match the requested model ({detail})")
    saved_train = state.get("train", {})
    diff = [
        f"--{k.replace('_', '-')}: checkpoint {saved_train.get(k)!r} vs requested {getattr(cfg, k)!r}"
        for k in _FIXED_ON_RESUME
        if k in saved_train and saved_train[k] != getattr(cfg, k)
    ]
    if diff:
        raise ckpt_io.CheckpointError(f"{ckpt / ckpt_io.TRAINER} was trained with other options: " + "; ".join(diff))
    tok_saved = _tokenizer_key(json.loads((ckpt / ckpt_io.DATA_META).read_text()))
    if tok_saved != _tokenizer_key(meta):
        raise ckpt_io.CheckpointError(
            f"{ckpt / ckpt_io.DATA_META}: the checkpoint's tokenizer {tok_saved} differs from the dataset's "
            f"{_tokenizer_key(meta)} ({cfg.data})"
        )


def _load_optimizer(ckpt: Path, raw: nn.Module, optimizer: Any, state: dict[str, Any], fsdp: bool) -> None:
    fmt = state.get("optimizer_format", "torch")
    if fmt != ("fqn" if fsdp else "torch"):
        raise ckpt_io.CheckpointError(
            f"{ckpt / ckpt_io.TRAINER} was written {'with' if fmt == 'fqn' else 'without'} --fsdp; "
            "resume it the same way"
        )
    if fsdp:
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

        set_optimizer_state_dict(raw, optimizer, state["optimizer"], options=StateDictOptions(full_state_dict=True))
    else:
        optimizer.load_state_dict(state["optimizer"])


def _full_state(raw: nn.Module, optimizer: Any, fsdp: bool, cls: type, model_cfg: Any) -> tuple[Any, dict[str, Any]]:
    """The model to save and the optimiser state; under FSDP both are gathered to rank 0 (a collective call)."""
    if not fsdp:
        return raw, optimizer.state_dict()
    from torch.distributed.checkpoint.state_dict import (
        StateDictOptions,
        get_model_state_dict,
        get_optimizer_state_dict,
    )

    opts = StateDictOptions(full_state_dict=True, cpu_offload=True)
    weights = get_model_state_dict(raw, options=opts)
    optim_state = get_optimizer_state_dict(raw, optimizer, options=opts)
    if not weights:  # not rank 0
        return None, {}
    plain = cls(model_cfg)
    missing, unexpected = plain.load_state_dict(weights, strict=False)
    if unexpected or set(missing) - {"lm_head.weight"}:  # the head is tied to the embedding
        raise RuntimeError(f"gathered FSDP state does not fit the model: missing {missing}, unexpected {unexpected}")
    return plain, optim_state


def _tokenizer_key(meta: dict[str, Any]) -> dict[str, Any]:
    tok = meta.get("tokenizer", {})
    return {k: tok.get(k) for k in ("kind", "vocab_size", "eot_id")}


@torch.no_grad()
def evaluate_tokens(
    model: nn.Module,
    tokens: np.ndarray,
    block_size: int,
    batch_size: int,
    max_windows: int,
    d: Dist,
    amp: Callable[[], contextlib.AbstractContextManager[Any]],
) -> float:
    """Mean next-token loss over consecutive windows of ``tokens``; the windows are dealt out to the processes."""
    every = eval_starts(len(tokens), block_size, max_windows)
    starts = every[d.rank :: d.world]
    n_batches = -(-len(every[:: d.world]) // batch_size)  # the most any process has; FSDP needs equal counts
    was_training = model.training
    model.eval()
    total = 0.0
    for i in range(n_batches):
        chunk = starts[i * batch_size : (i + 1) * batch_size]
        x, y = windows(tokens, chunk if len(chunk) else every[:1], block_size)  # an idle process runs a dummy
        with amp():
            _, loss = model(x.to(d.device), y.to(d.device))
        total += float(loss) * x.numel() if len(chunk) else 0.0
    model.train(was_training)
    total, count = all_sum(d, total, float(len(starts) * block_size))
    return total / count


def train(cfg: TrainConfig, callback: Callable[[int, dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Train as ``cfg`` says; returns {"step", "records", "checkpoint", "interrupted"}. ``callback(step, record)`` is
    called after every optimiser step (for tests and notebooks)."""
    d = setup(cfg.device)  # first: a device this machine lacks is refused before anything changes
    threads = torch.get_num_threads()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    try:
        return _train(cfg, d, callback)
    finally:
        teardown(d)
        torch.set_num_threads(threads)  # a library call leaves the process as it found it


def _train(cfg: TrainConfig, d: Dist, callback: Callable[[int, dict[str, Any]], None] | None) -> dict[str, Any]:
    say = print if d.main else (lambda *a, **k: None)
    if not cfg.data:
        raise ValueError("--data is required: a dataset directory prepared by `mosaic prepare`")
    run_dir = Path(cfg.out_dir)
    train_shard = open_split(cfg.data, cfg.train_split)
    val_split = cfg.val_split or default_val_split(cfg.data)
    val_shard = open_split(cfg.data, val_split) if val_split else None
    meta = dict(train_shard.meta)
    model_cfg = cfg.model_config(train_shard.vocab_size)

    # ---- batch geometry: the global batch is fixed, the accumulation adapts to the world size
    if cfg.batch_size % d.world:
        raise ValueError(f"--batch-size {cfg.batch_size} is not divisible by the world size {d.world}")
    per_rank = cfg.batch_size // d.world
    micro = min(cfg.micro_batch_size or per_rank, per_rank)
    if per_rank % micro:
        raise ValueError(f"{per_rank} sequences per process are not divisible by --micro-batch-size {micro}")
    accum = per_rank // micro

    # ---- resume or start
    resume_from: Path | None = None
    error: Exception | None = None
    if d.main:
        try:
            run_dir.mkdir(parents=True, exist_ok=True)
            ckpt_io.clean_temporary(run_dir)
            if cfg.resume:
                resume_from = ckpt_io.newest_good(run_dir, log=say)
                if resume_from is None:
                    say(f"no checkpoint in {run_dir}; starting from scratch")
            elif ckpt_io.list_checkpoints(run_dir):
                raise FileExistsError(
                    f"{run_dir} already holds checkpoints; pass --resume to continue that run or choose another "
                    "--out-dir"
                )
        except (OSError, ValueError) as e:
            error = e
    # every rank loads the checkpoint rank 0 chose, or fails with rank 0's error instead of waiting for it
    resume_from, error = broadcast_object(d, (resume_from, error))  # type: ignore[misc]
    if error is not None:
        raise error

    state: dict[str, Any] = {}
    cls = MODELS[cfg.arch]
    if resume_from is not None:
        state = ckpt_io.load_trainer_state(resume_from)
        _check_resume(resume_from, cfg, model_cfg, state, meta)
        model: LanguageModel = cls.from_pretrained(resume_from, vocab_size=model_cfg.vocab_size)
    else:
        torch.manual_seed(cfg.seed)  # the initial weights are a function of the seed
        model = cls(model_cfg)
    start = int(state.get("step", 0))
    raw = model.to(d.device)
    counts = {
        "params": raw.num_params(),
        "params_total": raw.num_params(non_embedding=False),
        "flops_per_token": raw.flops_per_token(cfg.block_size),
    }
    fsdp = cfg.fsdp and d.enabled
    if fsdp:  # shard each block, then the rest (embedding, tied head, final norm)
        from torch.distributed.fsdp import fully_shard

        for block in raw.blocks:
            fully_shard(block)
        fully_shard(raw)
    optimizer = raw.configure_optimizers(cfg.weight_decay, cfg.lr, (cfg.beta1, cfg.beta2), d.device.type == "cuda")
    amp_dtype = autocast_dtype(cfg.dtype, d.device)
    scaler = torch.amp.GradScaler(d.device.type, enabled=amp_dtype == torch.float16)
    if state:
        _load_optimizer(resume_from, raw, optimizer, state, fsdp)
        if state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
    train_model: nn.Module = raw
    if d.enabled and not fsdp:
        from torch.nn.parallel import DistributedDataParallel as DDP

        train_model = DDP(raw, device_ids=[d.device.index] if d.device.type == "cuda" else None)
    if cfg.compile:
        train_model = torch.compile(train_model)

    def amp() -> contextlib.AbstractContextManager[Any]:
        if amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(d.device.type, dtype=amp_dtype)

    schedule = WarmupCosine(cfg.lr, cfg.min_lr, cfg.warmup_iters, cfg.decay_iters)
    order = BatchOrder(train_shard.tokens, cfg.block_size, cfg.batch_size, cfg.seed)
    tokens_per_step = cfg.batch_size * cfg.block_size
    log = _Log(run_dir, d.main, start if resume_from is not None else None, cfg.tensorboard)
    if d.main:
        _write_json(
            run_dir / RUN_FILE,
            {
                "model_type": cfg.arch,
                "model": dataclasses.asdict(model_cfg),
                "train": cfg.to_dict(),
                "seed": cfg.seed,
                "world_size": d.world,
                "micro_batch_size": micro,
                "grad_accum": accum,
                "device": str(d.device),
                "autocast": str(amp_dtype),
                "torch": torch.__version__,
                **counts,
                "fsdp": fsdp,
                "data": {
                    "directory": str(Path(cfg.data).resolve()),
                    "val_split": val_split,
                    "meta": {k: v for k, v in meta.items() if not k.startswith("_")},
                    "train_windows_per_epoch": order.windows,
                },
                "resumed_from": str(resume_from) if resume_from else None,
            },
        )
        say(
            f"{cfg.arch}: {counts['params'] / 1e6:.2f}M parameters (non-embedding), {d.world} process(es) x "
            f"{accum} accumulation x {micro} sequences x {cfg.block_size} tokens, from step {start}"
        )

    def validate(step: int) -> None:
        if val_shard is None:
            return
        t = time.perf_counter()
        loss = evaluate_tokens(raw, val_shard.tokens, cfg.block_size, micro, cfg.eval_batches * micro, d, amp)
        log({"step": step, "val_loss": loss, "val_ppl": math.exp(min(loss, 50.0)), "eval_s": time.perf_counter() - t})

    def save(step: int, elapsed: float) -> Path | None:
        path = None
        weights, optim_state = _full_state(raw, optimizer, fsdp, cls, model_cfg)  # collective under FSDP
        if d.main:
            trainer_state = {
                "format": 1,
                "step": step,
                "optimizer": optim_state,
                "optimizer_format": "fqn" if fsdp else "torch",
                "scaler": scaler.state_dict(),
                "schedule": {"step": step, **dataclasses.asdict(schedule)},
                "rng": {
                    "torch": torch.get_rng_state(),
                    "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
                },
                "data": {
                    "samples": step * cfg.batch_size,
                    "seed": cfg.seed,
                    "batch_size": cfg.batch_size,
                    "block_size": cfg.block_size,
                    "split": cfg.train_split,
                },
                "tokens": step * tokens_per_step,
                "elapsed_s": elapsed,
                "world_size": d.world,
                "model_type": cfg.arch,
                "train": cfg.to_dict(),
            }
            path = ckpt_io.save(run_dir, step, weights, trainer_state, meta, cfg.keep_last, say, Path(cfg.data))
        barrier(d)
        return path

    if start == 0:
        validate(0)
    elapsed0, t_start = float(state.get("elapsed_s", 0.0)), time.perf_counter()
    last_ckpt: Path | None = resume_from
    interrupted = False
    bar = _progress(cfg, d, start)
    train_model.train()
    with _Interrupt() as stop:
        step = start
        # the interval's losses stay on the device: one host sync per logged step, not per step
        window_loss, window_steps, t_window = torch.zeros((), device=d.device), 0, time.perf_counter()
        while step < cfg.max_iters:
            lr = schedule(step)
            for group in optimizer.param_groups:
                group["lr"] = lr
            for m in range(accum):
                x, y = order.micro_batch(step, d.rank, d.world, m, micro)
                x, y = x.to(d.device, non_blocking=True), y.to(d.device, non_blocking=True)
                torch.manual_seed(dropout_seed(cfg.seed, step, d.rank * accum + m))
                no_sync = d.enabled and m < accum - 1  # all-reduce the gradients once, on the last micro-batch
                if fsdp:
                    raw.set_requires_gradient_sync(not no_sync)  # type: ignore[operator]
                with train_model.no_sync() if no_sync and not fsdp else contextlib.nullcontext():  # type: ignore[operator]
                    with amp():
                        _, loss = train_model(x, y)
                    scaler.scale(loss / accum).backward()
                window_loss += loss.detach() / accum
            grad_norm = None
            if cfg.grad_clip > 0:
                scaler.unscale_(optimizer)
                grad_norm = torch.nn.utils.clip_grad_norm_(raw.parameters(), cfg.grad_clip)
                grad_norm = grad_norm.full_tensor() if hasattr(grad_norm, "full_tensor") else grad_norm
            scaler.step(optimizer)
            scaler.update()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            window_steps += 1
            record: dict[str, Any] = {}
            if step % cfg.log_interval == 0 or step == cfg.max_iters:
                (loss_all,) = all_sum(d, float(window_loss))
                now = time.perf_counter()
                record = {
                    "step": step,
                    "loss": loss_all / (d.world * window_steps),
                    "lr": lr,
                    "tokens": step * tokens_per_step,
                    "tok_per_s": tokens_per_step * window_steps / max(now - t_window, 1e-9),
                    "elapsed_s": elapsed0 + now - t_start,
                }
                if grad_norm is not None:
                    record["grad_norm"] = float(grad_norm)
                log(record)
                bar.set_postfix(loss=f"{record['loss']:.4f}", tok_s=f"{record['tok_per_s']:.0f}", lr=f"{lr:.2e}")
                window_loss, window_steps, t_window = torch.zeros((), device=d.device), 0, now
            bar.update(1)
            if callback is not None:
                callback(step, record)
            if (cfg.eval_interval and step % cfg.eval_interval == 0) or step == cfg.max_iters:
                validate(step)
            interrupted = any_true(d, stop.requested)
            if interrupted or step % cfg.ckpt_interval == 0 or step == cfg.max_iters:
                last_ckpt = save(step, elapsed0 + time.perf_counter() - t_start)
            if interrupted:
                say(f"\ninterrupted: saved {last_ckpt} at step {step}; continue with --resume")
                break
    bar.close()
    log.close()
    return {"step": step, "records": log.records, "checkpoint": last_ckpt, "interrupted": interrupted}


def _progress(cfg: TrainConfig, d: Dist, start: int) -> Any:
    try:
        from tqdm.auto import tqdm
    except ImportError:  # pragma: no cover
        return _NoBar()
    return tqdm(
        total=cfg.max_iters, initial=start, disable=not (d.main and cfg.progress), unit="step", dynamic_ncols=True
    )


class _NoBar:
    def update(self, n: int) -> None: ...
    def set_postfix(self, **kw: Any) -> None: ...
    def close(self) -> None: ...


def read_log(run_dir: str | Path) -> list[dict[str, Any]]:
    """The records of a run's ``log.jsonl``."""
    lines = (Path(run_dir) / LOG_FILE).read_text().splitlines()
    return [json.loads(ln) for ln in lines if ln.strip()]
