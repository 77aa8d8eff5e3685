"""A training run's set-up: its data, batch geometry, run folder, and the checkpoint it resumes from (checked against
the run it is asked to continue)."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from memory_mosaics import checkpoints as ckpt_io
from memory_mosaics.data.shards import TokenShard, default_val_split
from memory_mosaics.distributed import Dist, broadcast_object
from memory_mosaics.train.config import TrainConfig

# options that must not change when resuming, because the data position or the model depends on them
FIXED_ON_RESUME = ("seed", "batch_size", "block_size", "train_split", "arch")


@dataclass(frozen=True)
class Data:
    """The prepared dataset a run reads: its training shard and the validation shard, if any."""

    train: TokenShard
    val: TokenShard | None
    val_split: str | None

    @classmethod
    def open(cls, cfg: TrainConfig) -> Data:
        if not cfg.data:
            raise ValueError("--data is required: a dataset directory prepared by `mosaic prepare`")
        train = TokenShard.open(cfg.data, cfg.train_split)
        val_split = cfg.val_split or default_val_split(cfg.data)
        return cls(train, TokenShard.open(cfg.data, val_split) if val_split else None, val_split)

    @property
    def meta(self) -> dict[str, Any]:
        return dict(self.train.meta)


@dataclass(frozen=True)
class Geometry:
    """The global batch is fixed; the accumulation adapts to the number of processes."""

    micro: int  # sequences per process per forward
    accum: int  # micro-batches per process per optimiser step

    @classmethod
    def of(cls, cfg: TrainConfig, world: int) -> Geometry:
        if cfg.batch_size % world:
            raise ValueError(f"--batch-size {cfg.batch_size} is not divisible by the world size {world}")
        per_rank = cfg.batch_size // world
        micro = min(cfg.micro_batch_size or per_rank, per_rank)
        if per_rank % micro:
            raise ValueError(f"{per_rank} sequences per process are not divisible by --micro-batch-size {micro}")
        return cls(micro, per_rank // micro)


def resume_point(cfg: TrainConfig, d: Dist, say: Any) -> Path | None:
    """The checkpoint to continue from (None: start afresh). Rank 0 prepares the run folder and chooses; every rank
    gets its choice, or fails with its error instead of waiting for it."""
    resume_from: Path | None = None
    error: Exception | None = None
    if d.main:
        run_dir = Path(cfg.out_dir)
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
    resume_from, error = broadcast_object(d, (resume_from, error))  # type: ignore[misc]
    if error is not None:
        raise error
    return resume_from


def check_resume(ckpt: Path, cfg: TrainConfig, model_cfg: Any, state: dict[str, Any], meta: dict[str, Any]) -> None:
    """One clear error, naming the file, when the checkpoint does not fit the requested run."""
    model_type, saved = ckpt_io.read_config(ckpt)
    config_file = ckpt / ckpt_io.CONFIG_FILE
    if model_type != cfg.arch:
        raise ckpt_io.CheckpointError(
            f"{config_file} holds a {model_type!r} model but this run asks for --arch {cfg.arch}; "
            "use another --out-dir or the same architecture"
        )
    wanted = dataclasses.asdict(model_cfg)
    diff = {k: (saved.get(k), v) for k, v in wanted.items() if saved.get(k) != v}
    if "vocab_size" in diff:
        raise ckpt_io.CheckpointError(
            f"vocabulary mismatch: {config_file} has vocab_size {saved.get('vocab_size')} but the dataset "
            f"{cfg.data} gives {model_cfg.vocab_size} (another tokenizer?)"
        )
    if diff:
        detail = ", ".join(f"{k}: checkpoint {a!r} vs requested {b!r}" for k, (a, b) in diff.items())
        raise ckpt_io.CheckpointError(f"{config_file} does not match the requested model ({detail})")
    saved_train = state.get("train", {})
    changed = [
        f"--{k.replace('_', '-')}: checkpoint {saved_train.get(k)!r} vs requested {getattr(cfg, k)!r}"
        for k in FIXED_ON_RESUME
        if k in saved_train and saved_train[k] != getattr(cfg, k)
    ]
    if changed:
        raise ckpt_io.CheckpointError(f"{ckpt / ckpt_io.TRAINER} was trained with other options: " + "; ".join(changed))
    saved_tok = ckpt_io.tokenizer_key(json.loads((ckpt / ckpt_io.DATA_META).read_text()))
    if saved_tok != ckpt_io.tokenizer_key(meta):
        raise ckpt_io.CheckpointError(
            f"{ckpt / ckpt_io.DATA_META}: the checkpoint's tokenizer {saved_tok} differs from the dataset's "
            f"{ckpt_io.tokenizer_key(meta)} ({cfg.data})"
        )


def check_optimizer_format(ckpt: Path, state: dict[str, Any], fsdp: bool, formats: dict[bool, str]) -> None:
    """A checkpoint written with FSDP resumes with FSDP, and one written without resumes without."""
    fmt = state.get("optimizer_format", "torch")
    if fmt != formats[fsdp]:
        raise ckpt_io.CheckpointError(
            f"{ckpt / ckpt_io.TRAINER} was written {'with' if fmt == formats[True] else 'without'} --fsdp; "
            "resume it the same way"
        )
