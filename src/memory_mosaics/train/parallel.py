"""How a model is spread over processes and compiled for training: DDP (a full copy per process), FSDP2 (weights,
gradients and AdamW state sharded, one unit per block) and ``torch.compile``; and the state they need gathered or
scattered for a checkpoint."""

from __future__ import annotations

import contextlib
from typing import Any

import torch
from torch import nn

from memory_mosaics.distributed import Dist
from memory_mosaics.models import LanguageModel

OPTIMIZER_FORMATS = {False: "torch", True: "fqn"}  # how trainer.pt stores the AdamW state, without / with FSDP


def shard(model: LanguageModel) -> None:
    """FSDP2 in place: each block is a unit, then the rest (embedding, tied head, final norm). Before the optimiser
    is built, which must see the sharded parameters."""
    from torch.distributed.fsdp import fully_shard

    for block in model.blocks:
        fully_shard(block)
    fully_shard(model)


def wrap(model: nn.Module, d: Dist, fsdp: bool, compile: bool) -> nn.Module:
    """The module the training step calls: DDP around ``model`` under several processes (unless FSDP already shards
    it), then ``torch.compile`` when asked."""
    if d.enabled and not fsdp:
        from torch.nn.parallel import DistributedDataParallel as DDP

        model = DDP(model, device_ids=[d.device.index] if d.device.type == "cuda" else None)
    if compile:
        model = torch.compile(model)
    return model


def gradient_sync(raw: nn.Module, wrapped: nn.Module, fsdp: bool, sync: bool) -> Any:
    """A context for one micro-batch's backward pass; ``sync`` False skips the all-reduce of its gradients (all
    micro-batches but the last under gradient accumulation)."""
    if fsdp:
        raw.set_requires_gradient_sync(sync)  # type: ignore[operator]
        return contextlib.nullcontext()
    return contextlib.nullcontext() if sync else wrapped.no_sync()  # type: ignore[operator]


def full_state(raw: LanguageModel, optimizer: Any, fsdp: bool) -> tuple[LanguageModel | None, dict[str, Any]]:
    """The model to save and the optimiser state. Under FSDP both are gathered to rank 0 (a collective call; the other
    ranks get (None, {}))."""
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
    plain = type(raw)(raw.config)
    missing, unexpected = plain.load_state_dict(weights, strict=False)
    if unexpected or set(missing) - {"lm_head.weight"}:  # the head is tied to the embedding
        raise RuntimeError(f"gathered FSDP state does not fit the model: missing {missing}, unexpected {unexpected}")
    return plain, optim_state


def load_optimizer(raw: nn.Module, optimizer: Any, optim_state: dict[str, Any], fsdp: bool) -> None:
    """Restore the AdamW state a checkpoint holds (scattered to the shards under FSDP)."""
    if fsdp:
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

        set_optimizer_state_dict(raw, optimizer, optim_state, options=StateDictOptions(full_state_dict=True))
    else:
        optimizer.load_state_dict(optim_state)
