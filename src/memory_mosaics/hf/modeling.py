"""The ``transformers`` classes: thin wrappers around ``memory_mosaics.models`` (no second implementation of the
mathematics) and a ``Cache`` holding their streaming ``ModelState``.

Padding: our models have no attention mask. Under left padding each row streams only its real tokens, and rows with
the same number of real tokens share one batched state (they stay aligned: every later step adds one token to each
row), so a padded position never enters a memory and an unpadded batch is one group, as fast as ours.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import Tensor
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    Cache,
    GenerationConfig,
    GenerationMixin,
    PreTrainedConfig,
    PreTrainedModel,
)
from transformers.modeling_outputs import CausalLMOutputWithPast

from memory_mosaics import checkpoints
from memory_mosaics.models import MODELS, LanguageModel
from memory_mosaics.state import ModelState


class MosaicsHFConfig(PreTrainedConfig):
    """config.json as ``checkpoints.save_model`` writes it: our architecture ``arch`` and its ``config`` fields, plus
    the few names ``transformers`` reads (derived from them)."""

    arch: ClassVar[str] = ""
    model_type = ""
    config: dict | None = None
    vocab_size: int | None = None
    hidden_size: int | None = None
    num_hidden_layers: int | None = None
    num_attention_heads: int | None = None
    tie_word_embeddings: bool = True
    use_cache: bool = True

    def __post_init__(self, **kwargs: Any) -> None:
        kwargs.pop("arch", None)  # the class says it
        if self.config is None:
            self.config = dataclasses.asdict(MODELS[self.arch].config_class())
        c = MODELS[self.arch].config_class(**self.config)  # refuses bad fields early
        self.vocab_size, self.hidden_size = c.vocab_size, c.n_embd
        self.num_hidden_layers, self.num_attention_heads = c.n_layer, c.n_head
        super().__post_init__(**kwargs)

    def to_dict(self) -> dict[str, Any]:
        out = super().to_dict()
        out["arch"] = self.arch
        return out


class MosaicCache(Cache):
    """The streaming state of a batch: groups of rows (row indices, their ``ModelState``), rows of a group having read
    the same number of real tokens. ``seen`` counts every input position, padding included (what ``generate``
    slices its inputs by)."""

    def __init__(self) -> None:
        super().__init__(layers=[])
        self.groups: list[tuple[Tensor, ModelState]] = []
        self.seen = 0

    def get_seq_length(self, layer_idx: int = 0) -> int:
        return self.seen

    def get_max_length(self, layer_idx: int | None = None) -> int:
        return -1

    @property
    def batch_size(self) -> int:
        return sum(int(rows.numel()) for rows, _ in self.groups) if self.groups else -1

    def reorder_cache(self, beam_idx: Tensor) -> None:
        """New row r continues old row beam_idx[r] (beam search; works across groups)."""
        beam_idx = beam_idx.to(self.groups[0][0].device) if self.groups else beam_idx
        n = max(int(rows.max()) + 1 for rows, _ in self.groups)
        group_of = torch.full((n,), -1, dtype=torch.long, device=beam_idx.device)
        local = torch.zeros(n, dtype=torch.long, device=beam_idx.device)
        for g, (rows, _) in enumerate(self.groups):
            group_of[rows] = g
            local[rows] = torch.arange(rows.numel(), device=rows.device)
        new = []
        for g, (_, state) in enumerate(self.groups):
            mine = (group_of[beam_idx] == g).nonzero().squeeze(1)
            if mine.numel():
                state.reorder(local[beam_idx[mine]])
                new.append((mine, state))
        self.groups = new

    def batch_select_indices(self, indices: Tensor) -> None:
        self.reorder_cache(indices)

    def batch_repeat_interleave(self, repeats: int) -> None:
        self.reorder_cache(torch.arange(self.batch_size).repeat_interleave(repeats))

    def crop(self, tokens_to_remove: int) -> None:
        raise NotImplementedError("a Memory Mosaic's state cannot be cropped (assisted decoding is not supported)")

    def reset(self) -> None:
        self.groups, self.seen = [], 0


class MosaicsPreTrainedModel(PreTrainedModel):
    config_class = MosaicsHFConfig
    base_model_prefix = "model"
    main_input_name = "input_ids"
    _no_split_modules: ClassVar[list[str]] = []

    def _init_weights(self, module: torch.nn.Module) -> None:
        pass  # our models initialise themselves; loading replaces every weight


class MosaicsForCausalLM(MosaicsPreTrainedModel, GenerationMixin):
    """A library model (``self.model``) seen by ``transformers``. Weights, config and folder are ours:
    ``save_pretrained`` / ``from_pretrained`` go through ``memory_mosaics.checkpoints``."""

    def __init__(self, config: MosaicsHFConfig, model: LanguageModel | None = None) -> None:
        super().__init__(config)
        cls = MODELS[config.arch]
        self.model = model if model is not None else cls(cls.config_class(**config.config))
        self.post_init()

    @classmethod
    def _supports_default_dynamic_cache(cls) -> bool:
        return False  # forward makes its own MosaicCache

    def get_input_embeddings(self) -> torch.nn.Module:
        return self.model.wte

    def get_output_embeddings(self) -> torch.nn.Module:
        return self.model.lm_head

    def tie_weights(self, *args: Any, **kwargs: Any) -> None:
        pass  # the library model ties (or not: v2, llama) its own head

    # ---- folders: ours ----------------------------------------------------------------------------------------------
    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | Path, *args: Any, **kwargs: Any) -> Any:
        """A model folder of ours (``save_pretrained``, ``mosaic train``'s ckpt-XXXXXXX, ``mosaic convert``); a Hub
        repository id is fetched with ``huggingface_hub`` first (from its cache when offline)."""
        path = _local_folder(pretrained_model_name_or_path, kwargs.get("revision"))
        arch, _ = checkpoints.read_config(path)
        if arch not in HF_CLASSES:
            raise ValueError(f"{path}: unknown architecture {arch!r} (known: {sorted(HF_CLASSES)})")
        if cls.config_class.arch and arch != cls.config_class.arch:
            raise ValueError(
                f"{path} holds a {arch!r} model, not a {cls.config_class.arch!r} one: load it with "
                f"{HF_CLASSES[arch].__name__} or AutoModelForCausalLM"
            )
        model = checkpoints.load_model(path)
        target = HF_CLASSES[arch]
        tied = model.lm_head.weight is model.wte.weight
        hf = target(target.config_class(config=dataclasses.asdict(model.config), tie_word_embeddings=tied), model)
        generation = path / "generation_config.json"
        if generation.is_file():
            hf.generation_config = GenerationConfig(**json.loads(generation.read_text()))
        dtype = kwargs.get("dtype", kwargs.get("torch_dtype"))
        if isinstance(dtype, str) and dtype != "auto":
            dtype = getattr(torch, dtype)
        if isinstance(dtype, torch.dtype):
            hf = hf.to(dtype)
        device = kwargs.get("device_map")
        if isinstance(device, str | torch.device | int) and str(device) != "auto":
            hf = hf.to(device)
        elif isinstance(device, dict) and len(set(device.values())) == 1:
            hf = hf.to(next(iter(device.values())))
        return hf.eval()

    def save_pretrained(self, save_directory: str | Path, *args: Any, **kwargs: Any) -> None:
        """Our folder (``checkpoints.save_model``: config.json, model.safetensors, a model card) and the generation
        config; transformers' sharding and serialisation options do not apply."""
        if kwargs.get("push_to_hub"):
            raise ValueError(
                "save_pretrained(push_to_hub=True) is not supported: save the folder, then upload it with "
                "huggingface_hub.upload_folder"
            )
        checkpoints.save_model(self.model, save_directory)
        self.generation_config.save_pretrained(save_directory)

    # ---- forward ----------------------------------------------------------------------------------------------------
    def forward(
        self,
        input_ids: Tensor | None = None,
        attention_mask: Tensor | None = None,
        cache: MosaicCache | None = None,
        past_key_values: MosaicCache | None = None,
        use_cache: bool | None = None,
        labels: Tensor | None = None,
        logits_to_keep: int | Tensor = 0,
        return_dict: bool | None = None,
        **kwargs: Any,
    ) -> CausalLMOutputWithPast:
        """Logits of ``input_ids``; with a ``cache`` (made here when ``use_cache``), they continue what it has read.
        ``attention_mask``: left padding only (a row's zeros first). ``labels`` are shifted inside, -100 ignored."""
        if input_ids is None:
            raise ValueError("Memory Mosaics models take input_ids (inputs_embeds are not supported)")
        cache = cache if cache is not None else past_key_values
        if cache is not None and not isinstance(cache, MosaicCache):
            if cache.get_seq_length() > 0:
                raise ValueError(f"a {type(cache).__name__} cannot continue a Memory Mosaics model; pass its cache")
            cache = None
        if use_cache is None:
            use_cache = cache is not None or (self.config.use_cache and not self.training)
        T = input_ids.shape[1]
        new_mask = None if attention_mask is None else attention_mask[:, -T:].to(torch.bool)
        if cache is None and use_cache:
            cache = MosaicCache()
        if cache is not None:
            logits = self._stream(input_ids, new_mask, cache)
        elif new_mask is None or bool(new_mask.all()):
            logits = self.model(input_ids)[0]
        else:
            logits = self._stream(input_ids, new_mask, MosaicCache())  # padded, no cache wanted: same exact path
        loss = None
        if labels is not None:
            shift = labels[:, 1:].masked_fill(labels[:, 1:] == -100, -1)
            loss = torch.nn.functional.cross_entropy(
                logits[:, :-1].float().reshape(-1, logits.shape[-1]), shift.reshape(-1), ignore_index=-1
            )
        if isinstance(logits_to_keep, int) and logits_to_keep > 0:
            logits = logits[:, -logits_to_keep:]
        elif isinstance(logits_to_keep, Tensor):
            logits = logits[:, logits_to_keep]
        return CausalLMOutputWithPast(loss=loss, logits=logits, cache=cache if use_cache else None)

    def _stream(self, idx: Tensor, mask: Tensor | None, cache: MosaicCache) -> Tensor:
        B, T = idx.shape
        if not cache.groups:  # the prompt: group rows by their number of real tokens
            if mask is None:
                mask = torch.ones_like(idx, dtype=torch.bool)
            real = mask.sum(1)
            if bool((mask != (torch.arange(T, device=idx.device) >= (T - real)[:, None])).any()):
                raise ValueError("attention_mask: only left padding is supported (each row's zeros first)")
            logits = None
            for n in real.unique().tolist():
                rows = (real == n).nonzero().squeeze(1)
                state = self.model.init_state()
                cache.groups.append((rows, state))
                if n == 0:
                    continue
                whole = n == T and rows.numel() == B
                part = self.model(idx if whole else idx[rows, T - n :], state=state)[0]
                if whole:
                    logits = part
                    continue
                if logits is None:
                    logits = part.new_zeros(B, T, part.shape[-1])
                logits[rows, T - n :] = part
            if logits is None:  # every row is padding only
                logits = torch.zeros(B, T, self.config.vocab_size, device=idx.device)
        else:
            if mask is not None and not bool(mask.all()):
                raise ValueError("attention_mask: only left padding is supported (a zero after the prompt)")
            if len(cache.groups) == 1 and cache.groups[0][0].numel() == B:
                logits = self.model(idx, state=cache.groups[0][1])[0]
            else:
                logits = None
                for rows, state in cache.groups:
                    part = self.model(idx[rows], state=state)[0]
                    if logits is None:
                        logits = part.new_zeros(B, T, part.shape[-1])
                    logits[rows] = part
        cache.seen += T
        return logits  # type: ignore[return-value]


def _local_folder(name: str | Path, revision: str | None = None) -> Path:
    """The folder ``name`` names: a local folder, else a Hub repository id fetched (or found in the cache when
    offline) by ``huggingface_hub``. A path that exists but is not a folder, or cannot be a Hub id, is refused."""
    path = Path(name).expanduser()
    if path.is_dir():
        return path
    if path.exists():
        raise NotADirectoryError(f"{path} is a file; pass the model folder (the one holding config.json)")
    text = str(name)
    if path.is_absolute() or text.startswith((".", "~")) or text.count("/") > 1 or "\\" in text:
        raise FileNotFoundError(f"model folder {path} does not exist")
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HFValidationError

    try:
        return Path(snapshot_download(text, revision=revision))
    except HFValidationError as e:
        raise FileNotFoundError(f"{text!r} is neither an existing model folder nor a Hub repository id ({e})") from e


def _classes(arch: str, hf_type: str, class_name: str) -> type[MosaicsForCausalLM]:
    config = type(
        class_name.replace("ForCausalLM", "Config"), (MosaicsHFConfig,), {"arch": arch, "model_type": hf_type}
    )
    config.__module__ = __name__
    model = type(class_name, (MosaicsForCausalLM,), {"config_class": config})
    model.__module__ = __name__
    return model


HF_CLASSES: dict[str, type[MosaicsForCausalLM]] = {
    arch: _classes(arch, hf_type, name) for arch, (hf_type, name) in checkpoints.HF_MODEL_TYPES.items()
}
for _cls in HF_CLASSES.values():
    globals()[_cls.__name__] = _cls
    globals()[_cls.config_class.__name__] = _cls.config_class


def register() -> None:
    """Register every architecture with ``AutoConfig`` and ``AutoModelForCausalLM`` (again: a no-op)."""
    for cls in HF_CLASSES.values():
        AutoConfig.register(cls.config_class.model_type, cls.config_class, exist_ok=True)
        AutoModelForCausalLM.register(cls.config_class, cls, exist_ok=True)
