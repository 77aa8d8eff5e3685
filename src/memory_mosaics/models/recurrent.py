"""Compressed-state baselines: an LSTM, and the Mamba and RWKV-4 models of Hugging Face ``transformers``.

Their state is a fixed-size vector: they read any length, but only what that vector kept of it, where a Memory Mosaic
stores every (key, value) pair. Each is a ``LanguageModel`` (our embedding, final LayerNorm, tied head, loss and
optimiser groups), so the training loops of the experiments treat it as any other architecture; they are trained and
evaluated in one pass over the sequence (no streaming state). The long-context suite (``experiments.longctx``) and
RegBench (``experiments.regbench``) train them with bodies matched to a Memory Mosaic's (``models.sizes``).

Shared model options that do not apply: a recurrent model has no heads and no position encoding (order is its
recurrence), so ``n_head`` and ``pos`` are dropped; biases belong to each library's cell (an LSTM's forget-gate bias,
Mamba's dt bias), so ``bias`` is dropped too and the cells stay as their libraries define them; transformers' Mamba
and RWKV have no dropout, so ``dropout`` applies to the LSTM only (between its layers, as ``torch.nn.LSTM`` does).
``init`` and ``logit_scale`` apply to what we own: the tied embedding (and the LSTM's output projection); the cells keep
their libraries' initialisation. ``build_recurrent`` drops the fields a model does not have.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar

from torch import Tensor, nn

from memory_mosaics.models.base import INITS, LanguageModel, check_range
from memory_mosaics.state import ModelState


def _check(c: Any) -> None:
    check_range(c, ">= 1", ("vocab_size", "block_size", "n_layer", "n_embd"))
    check_range(c, "> 0", ("logit_scale",))
    if c.init not in INITS:
        raise ValueError(f"init must be one of {INITS}, got {c.init!r}")


@dataclass
class LSTMConfig:
    vocab_size: int = 512
    block_size: int = 256  # training length; not a limit
    n_layer: int = 2
    n_embd: int = 64  # embedding width
    hidden: int | None = None  # LSTM cells per layer (None: n_embd); another width adds a Linear hidden -> n_embd
    dropout: float = 0.0  # between LSTM layers (none after the last)
    logit_scale: float = 1.0
    init: str = "gpt2"  # the embedding's and the projection's; the LSTM keeps PyTorch's uniform(±1/√hidden)
    doc_token: int | None = None

    def __post_init__(self) -> None:
        _check(self)
        if self.hidden is not None and self.hidden < 1:
            raise ValueError(f"hidden must be >= 1, got {self.hidden}")
        check_range(self, "in [0, 1)", ("dropout",))
        if self.doc_token is not None:
            raise ValueError("the LSTM baseline has no document-wise masking")


class LSTMLM(LanguageModel):
    """Embedding → ``n_layer`` LSTM layers of ``hidden`` cells (→ a Linear back to ``n_embd`` where the widths differ;
    not ``proj_size``, which oneDNN does not run) → LayerNorm → tied head."""

    model_type: ClassVar[str] = "lstm"
    config_class: ClassVar[type] = LSTMConfig

    def __init__(self, config: LSTMConfig) -> None:
        super().__init__(config)
        d, h = config.n_embd, config.hidden or config.n_embd
        self.wte = nn.Embedding(config.vocab_size, d)
        # torch warns about dropout on a one-layer LSTM, where it would act nowhere
        dropout = config.dropout if config.n_layer > 1 else 0.0
        self.lstm = nn.LSTM(d, h, config.n_layer, batch_first=True, dropout=dropout)
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


HF_KINDS = ("mamba", "rwkv")


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
    init: str = "gpt2"  # our embedding's: N(0, 0.02), or "library"'s N(0, 1/n_embd); the backbone keeps its own
    doc_token: int | None = None

    def __post_init__(self) -> None:
        if self.kind not in HF_KINDS:
            raise ValueError(f"kind must be 'mamba' or 'rwkv', got {self.kind!r}")
        _check(self)
        check_range(self, ">= 1", ("state_size",))
        if self.inner is not None and self.inner < 1:
            raise ValueError(f"inner must be >= 1, got {self.inner}")
        if self.kind == "rwkv" and self.n_layer < 2:
            raise ValueError(f"rwkv needs n_layer >= 2 (transformers' RWKV initialisation), got {self.n_layer}")
        if self.doc_token is not None:
            raise ValueError("the Hugging Face baselines have no document-wise masking")


def require_transformers() -> Any:
    """The ``transformers`` module, or an ImportError that says how to install it."""
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
    dt and A, RWKV's time mixing); only our embedding takes ``init``'s scale. Built as ``MambaLM`` or ``RWKVLM``
    (whose ``model_type`` the checkpoint records)."""

    config_class: ClassVar[type] = HFRecurrentConfig

    def __init__(self, config: HFRecurrentConfig) -> None:
        super().__init__(config)
        if config.kind != self.model_type:
            raise ValueError(f"{type(self).__name__} is a {self.model_type} model; the config says {config.kind!r}")
        tf = require_transformers()
        d = config.n_embd
        if config.kind == "mamba":
            hf = tf.MambaConfig(
                vocab_size=1,
                hidden_size=d,
                num_hidden_layers=config.n_layer,
                state_size=config.state_size,
                use_cache=False,
                # without the fused kernels, transformers' own fallback for training: mamba.py's parallel scan where
                # the package is installed (the hf extra), else a loop over time whose backward costs O(T²) memory
                # traffic (809 s against 27 s for one step of the RegBench default on a CPU)
                use_mambapy=True,
            )
            hf.intermediate_size = config.inner or 2 * d  # expand must be an integer; the width need not be k·d
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
        self.wte = nn.Embedding(config.vocab_size, d)
        nn.init.normal_(self.wte.weight, mean=0.0, std=0.02 if config.init == "gpt2" else d**-0.5)
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


class MambaLM(HFRecurrentLM):
    model_type: ClassVar[str] = "mamba"


class RWKVLM(HFRecurrentLM):
    model_type: ClassVar[str] = "rwkv"


RECURRENT: dict[str, type[LanguageModel]] = {"lstm": LSTMLM, "mamba": MambaLM, "rwkv": RWKVLM}


def recurrent_config(arch: str, **fields: Any) -> Any:
    """The config of ``arch`` (a key of RECURRENT) from shared model fields, without those it does not have (the
    module's docstring says why each is dropped)."""
    if arch not in RECURRENT:
        raise ValueError(f"unknown recurrent architecture {arch!r} (known: {sorted(RECURRENT)})")
    config_class = RECURRENT[arch].config_class
    known = {f.name for f in dataclasses.fields(config_class)}
    if arch in HF_KINDS:
        fields = {**fields, "kind": arch}
    return config_class(**{k: v for k, v in fields.items() if k in known})


def build_recurrent(arch: str, **fields: Any) -> LanguageModel:
    """A freshly initialised ``arch`` baseline (a key of RECURRENT) from shared model fields."""
    return RECURRENT[arch](recurrent_config(arch, **fields))
