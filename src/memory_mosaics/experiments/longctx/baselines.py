"""The architectures the long-context suite trains, at matched sizes.

The v2 paper leaves recurrent models out "by construction" (they cannot store every document before the question);
the suite measures that claim with the compressed-state baselines of ``models.recurrent`` (an LSTM; Mamba and RWKV of
``transformers``). Every body is matched to v1's 12·d² per block (``models.sizes.match_body``).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from memory_mosaics.models import MODELS, LanguageModel, build_model
from memory_mosaics.models.sizes import body_params, build_any, match_body

# the architectures of the suite: name -> (library architecture, config overrides); "fixed" holds v2's long-term
# delay m at its inference value in training too (the paper's Table 12 ablation against a random m)
ARCHS: dict[str, str] = {
    "mosaic": "mosaic",
    "mosaic2": "mosaic2",
    "mosaic2-fixed": "mosaic2",
    "gpt": "gpt",
    "llama": "llama",
    "lstm": "lstm",
    "mamba": "mamba",
    "rwkv": "rwkv",
}
LABELS = {
    "mosaic": "Memory Mosaic v1",
    "mosaic2": "Memory Mosaic v2 (random m)",
    "mosaic2-fixed": "Memory Mosaic v2 (fixed m)",
    "gpt": "GPT-2 (learned positions)",
    "llama": "llama (RoPE)",
    "lstm": "LSTM",
    "mamba": "Mamba (transformers)",
    "rwkv": "RWKV-4 (transformers)",
}


def make_model(name: str, fields: dict[str, Any], v2: dict[str, int]) -> tuple[LanguageModel, dict[str, Any]]:
    """A freshly initialised model of the suite's architecture ``name`` (a key of ARCHS) with the shared ``fields``
    (vocab_size, block_size, n_layer, n_head, n_embd), its body matched to v1's; ``v2`` holds short_window, long_delay,
    long_delay_min and long_delay_max for v2. Returns the model and its resolved config fields."""
    if name not in ARCHS:
        raise ValueError(f"unknown model {name!r} (known: {', '.join(ARCHS)})")
    arch = ARCHS[name]
    fields = {**fields, "dropout": 0.0}
    if arch == "gpt":
        fields["pos"] = "learned"
    if arch == "mosaic2":
        fields.update(v2)
        if name == "mosaic2-fixed":
            fields["long_delay_min"] = fields["long_delay_max"] = v2["long_delay"]
    target = body_params(build_model("mosaic", **{k: v for k, v in fields.items() if k in _MOSAIC_FIELDS}))
    fields = match_body(arch, fields, target)
    return build_any(arch, fields), fields


_MOSAIC_FIELDS = {f.name for f in dataclasses.fields(MODELS["mosaic"].config_class)}
