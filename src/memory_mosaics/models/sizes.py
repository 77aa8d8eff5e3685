"""Sizes matched on the body: the parameters outside the vocabulary matrices (the token embedding and, where it is
untied, the classifier). A baseline's width knob (v2's and llama's SwiGLU width, the LSTM's hidden width, Mamba's
expanded width, RWKV's FFN width) is solved so that its body equals a Memory Mosaic's, 12·d² per block, as
results/v2_cpu_800 did for v2 and llama; the long-context suite and RegBench both match their baselines this way."""

from __future__ import annotations

from typing import Any

from torch import nn

from memory_mosaics.models import LanguageModel, build_model
from memory_mosaics.models.recurrent import RECURRENT, build_recurrent

# architecture -> the config field match_body turns
WIDTH_FIELD = {
    "mosaic2": "ffn_hidden",
    "llama": "ffn_hidden",
    "lstm": "hidden",
    "mamba": "inner",
    "rwkv": "inner",
}


def body_params(model: nn.Module) -> int:
    """Parameters outside the vocabulary matrices: the token embedding and an untied classifier."""
    vocab = {id(model.wte.weight), id(model.lm_head.weight)}
    backbone = getattr(model, "backbone", None)
    for name in ("embeddings", "embedding"):  # a Hugging Face backbone's own one-row embedding, unused
        if backbone is not None and hasattr(backbone, name):
            vocab.add(id(getattr(backbone, name).weight))
    positions = set(getattr(model, "position_params", ()))
    return sum(
        p.numel() for n, p in model.named_parameters(remove_duplicate=True) if id(p) not in vocab and n not in positions
    )


def build_any(arch: str, fields: dict[str, Any]) -> LanguageModel:
    """A freshly initialised model of a library architecture (``models.MODELS``) or a recurrent baseline
    (``models.recurrent.RECURRENT``), each taking the fields it has."""
    if arch in RECURRENT:
        return build_recurrent(arch, **fields)
    return build_model(arch, **fields)


def match_body(arch: str, fields: dict[str, Any], target: int) -> dict[str, Any]:
    """``fields`` with the architecture's width knob set so that its body is as close to ``target`` as the knob
    allows (the body grows with the knob: bisection). Architectures without a knob are unchanged. The trial models
    draw from torch's random state."""
    knob = WIDTH_FIELD.get(arch)
    if knob is None:
        return dict(fields)

    def body(width: int) -> int:
        return body_params(build_any(arch, {**fields, knob: width}))

    lo, hi = 1, 16 * fields["n_embd"]
    while hi - lo > 1:  # invariant: body(lo) <= target < body(hi), or the bounds
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if body(mid) <= target else (lo, mid)
    width = min((lo, hi), key=lambda w: abs(body(w) - target))
    return {**fields, knob: width}
