"""Compressed-state baselines and the architectures the long-context suite trains, at matched sizes.

The v2 paper leaves recurrent models out "by construction" (they cannot store every document before the question);
the suite measures that claim. ``LSTMLM`` is a ``torch.nn.LSTM`` language model inside the library's
``LanguageModel`` (same embedding, final LayerNorm, tied head, loss and optimiser groups), so the training engine
treats it as any other architecture. Its state is a fixed-size vector: it reads any length, but only what that vector
kept of it.

Sizes are matched on the body, the parameters outside the vocabulary matrices (the token embedding and, where it is
untied, the classifier), to v1's 12·d² per block: v2's and llama's SwiGLU width and the LSTM's hidden width are solved
for it (``match_body``), as results/v2_cpu_800 did for v2 and llama.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar

from torch import Tensor, nn

from memory_mosaics.models import MODELS, LanguageModel, build_model
from memory_mosaics.state import ModelState


@dataclass
class LSTMConfig:
    vocab_size: int = 512
    block_size: int = 256  # training length; not a limit
    n_layer: int = 2
    n_embd: int = 64  # embedding width
    hidden: int | None = None  # LSTM cells per layer (None: n_embd); another width adds a Linear hidden -> n_embd
    dropout: float = 0.0
    logit_scale: float = 1.0
    init: str = "gpt2"  # the embedding's; the LSTM keeps PyTorch's uniform(±1/√hidden)
    doc_token: int | None = None

    def __post_init__(self) -> None:
        if min(self.vocab_size, self.block_size, self.n_layer, self.n_embd, self.hidden or 1) < 1:
            raise ValueError("vocab_size, block_size, n_layer, n_embd and hidden must be >= 1")
        if self.doc_token is not None:
            raise ValueError("the LSTM baseline has no document-wise masking")


class LSTMLM(LanguageModel):
    """Embedding → ``n_layer`` LSTM layers of ``hidden`` cells (→ a Linear back to ``n_embd`` where the widths differ;
    not ``proj_size``, which oneDNN does not run) → LayerNorm → tied head. Trained and evaluated in one pass over the
    sequence (no streaming state)."""

    model_type: ClassVar[str] = "lstm"
    config_class: ClassVar[type] = LSTMConfig

    def __init__(self, config: LSTMConfig) -> None:
        super().__init__(config)
        d, h = config.n_embd, config.hidden or config.n_embd
        self.wte = nn.Embedding(config.vocab_size, d)
        self.lstm = nn.LSTM(d, h, config.n_layer, batch_first=True, dropout=config.dropout)
        self.proj = nn.Linear(h, d) if h != d else nn.Identity()
        self.blocks = nn.ModuleList()  # no blocks: the LanguageModel's stack is the LSTM
        self.ln_f = nn.LayerNorm(d)
        self._tie_and_init()

    def embed(self, idx: Tensor, position: int) -> Tensor:
        return self.wte(idx)

    def run_blocks(self, x: Tensor, state: ModelState | None) -> Tensor:
        if state is not None:
            raise NotImplementedError("the LSTM baseline reads whole sequences; it has no streaming state")
        return self.proj(self.lstm(x)[0])

    def init_state(self) -> ModelState:
        raise NotImplementedError("the LSTM baseline reads whole sequences; it has no streaming state")


@dataclass
class HFRecurrentConfig:
    """Mamba or RWKV (v4) of Hugging Face ``transformers``, run on its pure-PyTorch path where no fused kernel is
    installed (as on a CPU)."""

    kind: str = "mamba"  # mamba | rwkv
    vocab_size: int = 512
    block_size: int = 256  # training length; not a limit
    n_layer: int = 2
    n_embd: int = 64
    inner: int | None = None  # Mamba's expanded width (None: 2·n_embd), RWKV's FFN width (None: 4·n_embd)
    state_size: int = 16  # Mamba's SSM state per channel
    logit_scale: float = 1.0
    doc_token: int | None = None

    def __post_init__(self) -> None:
        if self.kind not in ("mamba", "rwkv"):
            raise ValueError(f"kind must be 'mamba' or 'rwkv', got {self.kind!r}")
        if self.kind == "rwkv" and self.n_layer < 2:
            raise ValueError("transformers' RWKV initialisation needs n_layer >= 2")
        if self.doc_token is not None:
            raise ValueError("the Hugging Face baselines have no document-wise masking")


def _transformers() -> Any:
    try:
        import transformers
    except ImportError as e:
        raise ImportError(
            "the mamba and rwkv baselines need Hugging Face transformers: pip install transformers "
            "(or the project's hf extra)"
        ) from e
    return transformers


class HFRecurrentLM(LanguageModel):
    """Our embedding → the ``transformers`` Mamba or RWKV backbone (read through ``inputs_embeds``; its own
    embedding has one row, unused) → LayerNorm → tied head. The backbone keeps its library's initialisation (Mamba's
    dt and A, RWKV's time mixing); only our embedding takes GPT-2's N(0, 0.02)."""

    config_class: ClassVar[type] = HFRecurrentConfig

    def __init__(self, config: HFRecurrentConfig) -> None:
        super().__init__(config)
        tf = _transformers()
        d = config.n_embd
        if config.kind == "mamba":
            inner = config.inner or 2 * d
            hf = tf.MambaConfig(
                vocab_size=1,
                hidden_size=d,
                num_hidden_layers=config.n_layer,
                state_size=config.state_size,
                use_cache=False,
            )
            hf.intermediate_size = inner  # expand must be an integer; the width need not be a multiple of d
            self.backbone = tf.MambaModel(hf)
        else:
            hf = tf.RwkvConfig(
                vocab_size=1,
                hidden_size=d,
                num_hidden_layers=config.n_layer,
                attention_hidden_size=d,
                intermediate_size=config.inner or 4 * d,
                context_length=16 * config.block_size,
                use_cache=False,
            )
            self.backbone = tf.RwkvModel(hf)
        self.model_type = config.kind  # type: ignore[misc]
        self.wte = nn.Embedding(config.vocab_size, d)
        nn.init.normal_(self.wte.weight, mean=0.0, std=0.02)
        self.blocks = nn.ModuleList()
        self.ln_f = nn.LayerNorm(d)
        self.lm_head = nn.Linear(d, config.vocab_size, bias=False)
        self.lm_head.weight = self.wte.weight

    def embed(self, idx: Tensor, position: int) -> Tensor:
        return self.wte(idx)

    def run_blocks(self, x: Tensor, state: ModelState | None) -> Tensor:
        if state is not None:
            raise NotImplementedError("the Hugging Face baselines read whole sequences here; no streaming state")
        return self.backbone(inputs_embeds=x, use_cache=False).last_hidden_state

    def init_state(self) -> ModelState:
        raise NotImplementedError("the Hugging Face baselines read whole sequences here; no streaming state")


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
WIDTH_FIELD = {
    "mosaic2": "ffn_hidden",
    "llama": "ffn_hidden",
    "lstm": "hidden",
    "mamba": "inner",
    "rwkv": "inner",
}  # the knob match_body turns


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


def _build(arch: str, fields: dict[str, Any]) -> LanguageModel:
    if arch == "lstm":
        known = {f.name for f in dataclasses.fields(LSTMConfig)}
        return LSTMLM(LSTMConfig(**{k: v for k, v in fields.items() if k in known}))
    if arch in ("mamba", "rwkv"):
        known = {f.name for f in dataclasses.fields(HFRecurrentConfig)}
        return HFRecurrentLM(HFRecurrentConfig(kind=arch, **{k: v for k, v in fields.items() if k in known}))
    return build_model(arch, **fields)


def match_body(arch: str, fields: dict[str, Any], target: int) -> dict[str, Any]:
    """``fields`` with the architecture's width knob set so that its body is as close to ``target`` as the knob
    allows (the body grows with the knob: bisection). Architectures without a knob are unchanged."""
    knob = WIDTH_FIELD.get(arch)
    if knob is None:
        return dict(fields)

    def body(width: int) -> int:
        return body_params(_build(arch, {**fields, knob: width}))

    lo, hi = 1, 16 * fields["n_embd"]
    while hi - lo > 1:  # invariant: body(lo) <= target < body(hi), or the bounds
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if body(mid) <= target else (lo, mid)
    width = min((lo, hi), key=lambda w: abs(body(w) - target))
    return {**fields, knob: width}


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
    return _build(arch, fields), fields


_MOSAIC_FIELDS = {f.name for f in dataclasses.fields(MODELS["mosaic"].config_class)}
