"""Weights written by earlier versions of the library, renamed to today's module names on load.

Version 0.1 named a Memory Mosaic block's sub-layers after the GPT-2 block they replace, ``attn`` and ``mlp``; they
are now ``contextual`` and ``persistent``, as in the paper (a GPT block keeps ``attn`` and ``mlp``, its own names).
"""

from __future__ import annotations

import re

from torch import Tensor

# blocks.<i>.attn. -> blocks.<i>.contextual., blocks.<i>.mlp. -> blocks.<i>.persistent. (Memory Mosaics only)
MOSAIC_RENAMES = {"attn": "contextual", "mlp": "persistent"}
MOSAIC_OLD_NAME = re.compile(r"^(blocks\.\d+\.)(attn|mlp)\.")


def upgrade_state_dict(model_type: str, state: dict[str, Tensor]) -> dict[str, Tensor]:
    """``state`` with every parameter name an earlier version wrote mapped to today's name (identity for today's)."""
    if model_type != "mosaic":
        return state
    return {
        MOSAIC_OLD_NAME.sub(lambda m: f"{m[1]}{MOSAIC_RENAMES[m[2]]}.", name): tensor for name, tensor in state.items()
    }
