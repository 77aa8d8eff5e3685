"""Training options: one flat dataclass; ``mosaic train`` makes one flag per field from the help text beside it."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from memory_mosaics.devices import PRECISIONS
from memory_mosaics.models import (
    INITS,
    MODELS,
    PERSISTENT_KINDS,
    POSITION_ENCODINGS,
    GPTConfig,
    MosaicConfig,
    MosaicV2Config,
    model_config,
)
from memory_mosaics.models.base import check_range
from memory_mosaics.models.mosaic_v2 import PERSISTENT_V2


def _opt(default: Any, help: str, **kw: Any) -> Any:
    return field(default=default, metadata={"help": help, **kw})


@dataclass
class TrainConfig:
    # ---- data and run folder
    data: str = _opt("", "prepared dataset directory (meta.json + <split>.bin, written by `mosaic prepare`)")
    out_dir: str = _opt("runs/lm", "run folder: run.json, log.jsonl, ckpt-XXXXXXX/")
    train_split: str = _opt("train", "split used for training")
    val_split: str = _opt("", "split used for validation ('' = the first of val/valid/validation present)")
    resume: bool = _opt(False, "continue from the newest complete checkpoint in --out-dir")
    # ---- model
    arch: str = _opt("mosaic", "architecture", choices=tuple(MODELS))
    n_layer: int = _opt(12, "blocks")
    n_head: int = _opt(12, "heads (contextual and persistent memory units per block for a Memory Mosaic)")
    n_embd: int = _opt(768, "embedding dimension")
    block_size: int = _opt(512, "training context (tokens per sequence)")
    dropout: float = _opt(0.0, "dropout (attention scores, head outputs, FFN / persistent memory output)")
    bias: bool | None = _opt(
        None, "biases in Linear layers and norms (default: the architecture's: on for mosaic, gpt; off for v2, llama)"
    )
    pmem_size: int = _opt(0, "Memory Mosaic: slots per persistent memory (0 = 3.5 x n_embd, GPT-2 weight count)")
    pmem_count: int = _opt(1, "Memory Mosaic: persistent memory banks averaged per unit")
    persistent: str = _opt(
        "",
        "Memory Mosaic persistent units ('' = the architecture's default: memory for mosaic, swiglu for mosaic2)",
        choices=tuple(dict.fromkeys(("", *PERSISTENT_KINDS, *PERSISTENT_V2))),
    )
    short_window: int = _opt(256, "Memory Mosaic v2: the short-term memory sees pairs t-h+1 ... t-1 (h)")
    long_delay: int = _opt(64, "Memory Mosaic v2: the long-term memory sees pairs 0 ... t-m; m at evaluation")
    long_delay_min: int = _opt(64, "Memory Mosaic v2: training draws m per optimiser step from [min, max]")
    long_delay_max: int = _opt(256, "Memory Mosaic v2: see --long-delay-min")
    ffn_hidden: int = _opt(0, "Memory Mosaic v2 and llama: hidden width of the SwiGLU (0 = 3 x n_embd)")
    split: bool = _opt(False, "llama: short-window heads beside long-range heads (the v2 paper's Figure 5 ablation)")
    document_mask: bool = _opt(
        False,
        "every architecture: no memory (or attention) reads across documents; each document of a window is read "
        "alone, as the v2 paper trains (the data's end-of-text token closes a document)",
    )
    pos: str = _opt("learned", "GPT: position encoding", choices=POSITION_ENCODINGS)
    init: str = _opt(
        "gpt2",
        "initialisation: gpt2 (normal 0.02) or library (the authors' Library: fan-in scaled; pair with --logit-scale)",
        choices=INITS,
    )
    logit_scale: float = _opt(1.0, "multiply the logits by this (the authors' Library model: 1/sqrt(n_embd))")
    pad_vocab: int = _opt(1, "round the vocabulary up to a multiple of this (64 is faster on GPUs)")
    # ---- optimisation
    batch_size: int = _opt(64, "global batch in sequences (fixed whatever the number of processes)")
    micro_batch_size: int = _opt(
        0,
        "sequences per process per forward (0 = batch_size / world size); the gradient "
        "accumulation is batch_size / (world size x micro_batch_size)",
    )
    max_iters: int = _opt(1000, "optimiser steps")
    lr: float = _opt(5e-3, "peak learning rate")
    min_lr: float = _opt(1e-4, "learning rate at the end of the cosine decay")
    warmup_iters: int = _opt(100, "linear warm-up steps")
    lr_decay_iters: int = _opt(0, "step where the cosine reaches min_lr (0 = max_iters)")
    weight_decay: float = _opt(0.1, "AdamW weight decay (matrices, embeddings, memory banks only)")
    beta1: float = _opt(0.9, "AdamW beta1")
    beta2: float = _opt(0.95, "AdamW beta2")
    grad_clip: float = _opt(1.0, "clip the global gradient norm to this (0 = off)")
    seed: int = _opt(1337, "seed: initial weights, batch order and dropout masks are functions of it alone")
    # ---- evaluation, logging, checkpoints
    eval_interval: int = _opt(250, "validate every this many steps (0 = only at the end)")
    eval_batches: int = _opt(20, "validation batches of micro_batch_size sequences (0 = the whole split)")
    log_interval: int = _opt(10, "write a training log line every this many steps")
    ckpt_interval: int = _opt(500, "checkpoint every this many steps (and at the end, and on Ctrl-C / SIGTERM)")
    keep_last: int = _opt(3, "checkpoints to keep")
    tensorboard: bool = _opt(True, "also log to TensorBoard when it is installed")
    progress: bool = _opt(True, "progress bar (rank 0)")
    # ---- hardware
    device: str = _opt("auto", "auto (cuda > mps > cpu), cpu, cuda, cuda:N, mps")
    dtype: str = _opt(
        "auto",
        "autocast dtype: auto (bf16 on CUDA when supported, else fp32)",
        choices=PRECISIONS,
    )
    compile: bool = _opt(False, "torch.compile the model")
    fsdp: bool = _opt(
        False,
        "under torchrun: shard weights, gradients and AdamW state over the processes (FSDP2, one unit per block) "
        "instead of DDP's full copy per process; for models that do not fit",
    )
    threads: int = _opt(
        0, "CPU threads per process (0 = PyTorch default; 1 is fastest for small models on a busy machine)"
    )

    def __post_init__(self) -> None:
        positive = (
            "n_layer",
            "n_head",
            "n_embd",
            "block_size",
            "batch_size",
            "max_iters",
            "keep_last",
            "pad_vocab",
            "log_interval",
            "ckpt_interval",
        )
        natural = (  # 0 means: the default, off, all or at the end
            "pmem_size",
            "micro_batch_size",
            "warmup_iters",
            "lr_decay_iters",
            "eval_interval",
            "eval_batches",
            "threads",
            "min_lr",
            "weight_decay",
            "grad_clip",
        )

        def flag(name: str) -> str:
            return "--" + name.replace("_", "-")

        check_range(self, ">= 1", positive, flag)
        check_range(self, ">= 0", natural, flag)
        check_range(self, "> 0", ("lr",), flag)
        check_range(self, "in [0, 1)", ("beta1", "beta2"), flag)
        if Path(self.out_dir).exists() and not Path(self.out_dir).is_dir():
            raise ValueError(f"--out-dir {self.out_dir} is a file, not a folder")
        if self.min_lr > self.lr:
            raise ValueError(f"--min-lr ({self.min_lr}) must not exceed --lr ({self.lr})")

    @property
    def decay_iters(self) -> int:
        return self.lr_decay_iters or self.max_iters

    def model_config(self, vocab_size: int, eot_id: int | None = None) -> MosaicConfig | MosaicV2Config | GPTConfig:
        """The architecture this run trains, for a dataset of ``vocab_size`` tokens (padded to ``pad_vocab``) whose
        end-of-text token is ``eot_id`` (needed with ``document_mask``)."""
        if self.document_mask and eot_id is None:
            raise ValueError("document_mask needs the data's end-of-text token id")
        return model_config(
            self.arch,
            vocab_size=-(-vocab_size // self.pad_vocab) * self.pad_vocab,
            block_size=self.block_size,
            n_layer=self.n_layer,
            n_head=self.n_head,
            n_embd=self.n_embd,
            dropout=self.dropout,
            **({"bias": self.bias} if self.bias is not None else {}),
            init=self.init,
            logit_scale=self.logit_scale,
            pos=self.pos,
            pmem_size=self.pmem_size or None,
            pmem_count=self.pmem_count,
            **({"persistent": self.persistent} if self.persistent else {}),
            short_window=self.short_window,
            long_delay=self.long_delay,
            long_delay_min=self.long_delay_min,
            long_delay_max=self.long_delay_max,
            ffn_hidden=self.ffn_hidden or None,
            split=self.split,
            doc_token=eot_id if self.document_mask else None,
        )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
