"""Per-position loss, shared by the out-of-distribution (Figure 8) and length-extrapolation commands."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from memory_mosaics.models import LanguageModel


@torch.no_grad()
def per_position_loss(
    model: LanguageModel, tokens: np.ndarray, context: int, batch_size: int = 8, max_windows: int = 0, chunk: int = 0
) -> dict[str, Any]:
    """Mean loss at each position of consecutive windows of ``context`` tokens (``mosaic eval``'s windows).

    ``chunk = 0`` runs one forward per window (``mosaic eval``'s function). ``chunk > 0`` streams each window through
    the model's memory state ``chunk`` tokens at a time: the same numbers, but attention memory grows like
    chunk × context instead of context², which is what reading 8× the training length on a CPU needs.
    """
    from memory_mosaics.train.batches import eval_starts, windows
    from memory_mosaics.train.evaluate import evaluate

    if chunk <= 0 or chunk >= context:
        return evaluate(model, tokens, context, batch_size, max_windows)
    device = next(model.parameters()).device
    starts = eval_starts(len(tokens), context, max_windows)
    per_pos = torch.zeros(context, dtype=torch.float64)
    for i in range(0, len(starts), batch_size):
        x, y = windows(tokens, starts[i : i + batch_size], context)
        x, y = x.to(device), y.to(device)
        state = model.init_state()
        for c in range(0, context, chunk):
            logits, _ = model(x[:, c : c + chunk], state=state)
            loss = F.cross_entropy(logits.float().transpose(1, 2), y[:, c : c + chunk], reduction="none")
            per_pos[c : c + chunk] += loss.sum(0).double().cpu()
    per_pos /= len(starts)
    loss = float(per_pos.mean())
    return {
        "loss": loss,
        "tokens": len(starts) * context,
        "windows": len(starts),
        "context": context,
        "per_position": per_pos.tolist(),
    }


def crossings(a: np.ndarray, b: np.ndarray) -> dict[str, Any]:
    """Where curve ``a`` (e.g. the Memory Mosaic's loss) goes below curve ``b`` (the GPT's).

    ``first_below``: the first position where a < b; ``below_from``: the first position after which a < b holds to the
    end of the window (None if a is not below b at the end); ``sign_changes``: every position where the sign of b − a
    changes.
    """
    d = np.asarray(b, dtype=np.float64) - np.asarray(a, dtype=np.float64)
    below = d > 0
    first = int(np.argmax(below)) if below.any() else None
    below_from = None
    if below[-1]:
        above = np.flatnonzero(~below)
        below_from = int(above[-1] + 1) if len(above) else 0
    sign = np.sign(d)
    changes = [int(i + 1) for i in np.flatnonzero(sign[1:] * sign[:-1] < 0)]
    return {"first_below": first, "below_from": below_from, "sign_changes": changes}
