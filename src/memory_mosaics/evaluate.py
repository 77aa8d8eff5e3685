"""The one evaluator: next-token loss over windows of a token stream.

Training-time validation, ``mosaic eval`` and the paper's per-position figures all call ``window_loss``. Windows are
consecutive and non-overlapping (``eval_starts``); a capped number of them is spread evenly over the whole stream, so a
quick validation estimates the loss of the whole split instead of the loss of its beginning.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from memory_mosaics.data.shards import windows
from memory_mosaics.devices import autocast
from memory_mosaics.distributed import Dist, all_sum
from memory_mosaics.models import LanguageModel


def eval_starts(n_tokens: int, context: int, max_windows: int = 0) -> np.ndarray:
    """Start offsets of the evaluation windows of a stream of ``n_tokens``: every non-overlapping window of
    ``context`` (+1 target) tokens, or ``max_windows`` of them spread evenly from the first to the last."""
    count = (n_tokens - 1) // context
    if count < 1:
        raise ValueError(f"the split has {n_tokens} tokens, fewer than context + 1 = {context + 1}")
    index = np.arange(count, dtype=np.int64)
    if 0 < max_windows < count:
        index = np.linspace(0, count - 1, max_windows).round().astype(np.int64)
    return index * context


def _token_losses(model: LanguageModel, x: torch.Tensor, y: torch.Tensor, chunk: int) -> torch.Tensor:
    """(B, T) cross-entropy of each target; ``chunk`` > 0 streams the window through the memory state ``chunk`` tokens
    at a time (the same numbers, but memory grows like chunk × T instead of T², which reading 8× the training length
    on a CPU needs)."""
    T = x.shape[1]
    if chunk <= 0 or chunk >= T:
        logits, _ = model(x)
        return F.cross_entropy(logits.float().transpose(1, 2), y, reduction="none")
    if getattr(model.config, "doc_token", None) is not None and x.shape[0] > 1:
        # a document-masked state restarts where a document ends, so its rows cannot share one stream
        return torch.cat([_token_losses(model, x[i : i + 1], y[i : i + 1], chunk) for i in range(x.shape[0])])
    state = model.init_state()
    parts = []
    for c in range(0, T, chunk):
        logits, _ = model(x[:, c : c + chunk], state=state)
        parts.append(F.cross_entropy(logits.float().transpose(1, 2), y[:, c : c + chunk], reduction="none"))
    return torch.cat(parts, dim=1)


@torch.no_grad()
def window_loss(
    model: LanguageModel,
    tokens: np.ndarray,
    context: int,
    batch_size: int = 8,
    max_windows: int = 0,
    chunk: int = 0,
    dist: Dist | None = None,
    precision: torch.dtype | None = None,
) -> dict[str, Any]:
    """Mean next-token loss over the windows of ``eval_starts`` and the mean loss at each position of the window.

    Under ``dist`` the windows are dealt out to the processes and the sums gathered (every process returns the same
    numbers); ``precision`` is the autocast dtype (None: none). The model is put in eval mode for the
    call and left as it was found.
    """
    d = dist or Dist(device=next(model.parameters()).device)
    every = eval_starts(len(tokens), context, max_windows)
    mine = every[d.rank :: d.world]
    n_batches = -(-len(every[:: d.world]) // batch_size)  # the most any process has: FSDP needs equal counts
    was_training = model.training
    model.eval()
    per_pos = torch.zeros(context, dtype=torch.float64, device=d.device)
    try:
        for i in range(n_batches):
            starts = mine[i * batch_size : (i + 1) * batch_size]
            x, y = windows(tokens, starts if len(starts) else every[:1], context)  # an idle process runs a dummy
            with autocast(d.device, precision):
                losses = _token_losses(model, x.to(d.device), y.to(d.device), chunk)
            if len(starts):
                per_pos += losses.sum(0).double()
    finally:
        model.train(was_training)
    if d.enabled:
        *sums, n = all_sum(d, *per_pos.tolist(), float(len(mine)))
        per_pos = torch.tensor(sums, dtype=torch.float64) / n
    else:
        per_pos = per_pos.cpu() / len(mine)
    loss = float(per_pos.mean())
    return {
        "loss": loss,
        "ppl": math.exp(min(loss, 50.0)),
        "tokens": len(every) * context,
        "windows": len(every),
        "context": context,
        "per_position": per_pos.tolist(),
    }
